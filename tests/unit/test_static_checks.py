"""The code's own rules, checked on every test run: ruff, mypy (strict), the
package import contracts (import-linter, pyproject.toml), and the size limits of
docs/architecture.md (no module over 400 lines, no class over 300, at most 8
modules directly in controlplane/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGES = ("controlplane", "signaling", "schemas", "telemed_client")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_package_import_contracts_hold() -> None:
    result = _run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    source = path.read_text()
    assert source.count("\n") <= 400, f"{path.name} has more than 400 lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            assert length <= 300, f"class {node.name} has {length} lines"


def test_controlplane_top_level_holds_at_most_eight_modules() -> None:
    top = sorted(p.name for p in (ROOT / "controlplane").glob("*.py"))
    assert len(top) <= 8, top
