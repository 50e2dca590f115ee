"""Session lifecycle rules: a maximum duration per session type and an
inactivity timeout end the session and close its room; peers are told why."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from controlplane.devstack import services as ls
from telemed_client import MediaPeer
from tests.conftest import Stack
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def strict_instance(stack: Stack) -> Iterator[ls.ManagedProcess]:
    """A control plane with tight limits: follow-ups last 3 s, 2 s idle ends a session."""
    env = stack.control_plane_env(
        TELEMED_MAX_DURATIONS="follow_up=3",
        TELEMED_INACTIVITY_TIMEOUT="2",
        TELEMED_LIFECYCLE_INTERVAL="0.5",
    )
    process = ls.start_control_plane(stack.data_dir, env)
    yield process
    process.stop()


@pytest.fixture
async def api(stack: Stack):
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def test_max_duration_ends_the_session_and_tells_the_peers(
    stack: Stack, strict_instance: ls.ManagedProcess, api: Api, peers
) -> None:
    session, physician, _patient = await api.active_session(sessionType="follow_up")
    token = await api.call(
        "POST", f"session/{session['sessionId']}/room-token", api.token(physician, "physician")
    )
    peer = MediaPeer(strict_instance.url, token.body["token"])
    peers.append(peer)
    await peer.connect()
    await peer.join(token.body["roomId"])
    await peer.start_sending()

    told = await peer.wait_for_event("sessionEnded", timeout=15)
    assert told["reason"] == "max_duration"
    read = await api.call(
        "GET", f"session/{session['sessionId']}", api.token(physician, "physician")
    )
    assert read.body["status"] == "ended" and read.body["endReason"] == "max_duration"
    assert 3 <= read.body["durationSeconds"] < 15


async def test_inactivity_ends_a_session_nobody_joins(
    strict_instance: ls.ManagedProcess, api: Api
) -> None:
    import asyncio

    session, physician, _patient = await api.active_session()
    for _ in range(60):
        read = await api.call(
            "GET", f"session/{session['sessionId']}", api.token(physician, "physician")
        )
        if read.body["status"] == "ended":
            break
        await asyncio.sleep(0.25)
    assert read.body["status"] == "ended" and read.body["endReason"] == "inactivity"
