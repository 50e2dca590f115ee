"""The offline worker build's meson rewrite, on mediasoup's real meson files."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "sfu_worker" / "node_modules" / "mediasoup" / "worker"


def _patcher():
    spec = importlib.util.spec_from_file_location(
        "patch_meson", ROOT / "sfu_worker/scripts/patch_meson.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def worker_copy(tmp_path: Path) -> Path:
    target = tmp_path / "worker"
    (target / "deps" / "libwebrtc").mkdir(parents=True)
    shutil.copy(WORKER / "meson.build", target / "meson.build")
    shutil.copy(WORKER / "deps/libwebrtc/meson.build", target / "deps/libwebrtc/meson.build")
    return target


def test_every_subproject_becomes_a_system_dependency(worker_copy: Path) -> None:
    _patcher().patch_worker(worker_copy)
    top = (worker_copy / "meson.build").read_text()
    webrtc = (worker_copy / "deps/libwebrtc/meson.build").read_text()
    # Only the Windows-only wingetopt subproject (never evaluated on Linux) remains.
    assert re.findall(r"(\w+)_proj = subproject", top) == ["wingetopt"]
    assert "subproject(" not in webrtc
    for name in ("openssl", "libuv", "libsrtp2", "usrsctp", "nlohmann_json", "absl_flat_hash_map"):
        assert f"dependency('{name}')" in top
    assert "srtp2" in top  # <srtp.h> lives under <includedir>/srtp2 on Debian
    assert "mediasoup-worker-test" not in top and "fuzzer" not in top


def test_patch_is_idempotent(worker_copy: Path) -> None:
    patcher = _patcher()
    patcher.patch_worker(worker_copy)
    once = (worker_copy / "meson.build").read_text()
    patcher.patch_worker(worker_copy)
    assert (worker_copy / "meson.build").read_text() == once
