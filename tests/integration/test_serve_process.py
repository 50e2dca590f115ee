"""`telemed serve` as an operator starts it: an address it cannot listen on
stops it at once with one clear line, not a hang or a traceback (it used to hang
in clean-up until killed: a background loop's cancel was lost, see
controlplane/runtime.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from controlplane.devstack import services as ls
from controlplane.devstack.processes import spawn
from tests.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _log_events(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


async def test_a_taken_port_stops_serve_at_once_with_a_clear_error(
    stack: Stack, taken_port: int
) -> None:
    log_path = stack.data_dir / f"serve-taken-{taken_port}.log"
    env = {
        **stack.control_plane_env(**stack.turn_env()),
        "TELEMED_HOST": "127.0.0.1",
        "TELEMED_PORT": str(taken_port),
    }
    process = spawn(
        "control-plane",
        [sys.executable, "-m", "controlplane.cli", "serve"],
        log_path,
        env=env,
        cwd=ls.PROJECT_ROOT,
    )
    started = time.monotonic()
    try:
        code = await asyncio.to_thread(process.proc.wait, 60)
    finally:
        process.stop()
    elapsed = time.monotonic() - started
    text = log_path.read_text()
    events = _log_events(text)
    failed = [e for e in events if e.get("event") == "listen_failed"]
    assert code == 1, text[-2000:]
    assert failed == [
        {
            "host": "127.0.0.1",
            "port": taken_port,
            "error": "EADDRINUSE",
            "event": "listen_failed",
            "level": "error",
            "timestamp": failed[0]["timestamp"],
        }
    ]
    assert "Traceback" not in text
    # every background task ended when told to (none left running, none failed)
    assert not [e for e in events if e.get("event", "").startswith("background_task")]
    print(f"serve on a taken port exited with {code} after {elapsed:.1f} s")


def test_a_port_taken_between_the_check_and_the_bind_is_replaced(
    stack: Stack, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local stack's start-up (tests, `make run` without a port): another
    process takes the chosen port before the control plane binds it."""
    real_free_port = ls.free_port
    offered: list[int] = []

    def first_the_taken_one(host: str = "127.0.0.1", avoid=()) -> int:
        port = taken_port if not offered else real_free_port(host, avoid)
        offered.append(port)
        return port

    monkeypatch.setattr(ls, "free_port", first_the_taken_one)
    process = ls.start_control_plane(stack.data_dir, stack.control_plane_env())
    try:
        assert len(offered) == 2 and offered[0] == taken_port
        assert process.url == f"http://127.0.0.1:{offered[1]}"
        assert ls.http_ok(f"{process.url}/health/live")
    finally:
        process.stop()
