"""Runs the browser client's JavaScript unit tests (node --test) as part of pytest."""

from __future__ import annotations

import subprocess
from pathlib import Path

from controlplane.devstack.services import node_binary

ROOT = Path(__file__).resolve().parents[2]


def test_web_client_unit_tests_pass() -> None:
    result = subprocess.run(
        [node_binary(), "--test", "web/test/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
