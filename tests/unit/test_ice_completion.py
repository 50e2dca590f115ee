"""telemed_client.network: aioice's connect() returns once its check list is
completed, not at its next 20 ms pacing tick.  Two real aioice agents on
loopback, the controlling one also given a lower-priority candidate that answers
nothing (a second pair, as a relay candidate makes): the connection is made, data flows both
ways, aioice finishes its own connect() in the background, and a connection
closed right after connecting starts no consent checks."""

from __future__ import annotations

import asyncio
import socket

import aioice
import pytest

from bench.ice_connect import loopback_agents
from telemed_client import network


@pytest.fixture
def silent_port() -> object:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_aioice_connects_through_the_prompt_connect() -> None:
    assert aioice.Connection.connect is network._connect_when_completed
    assert aioice.Connection.check_complete is network._check_complete_and_tell


async def test_connected_with_a_pair_left_waiting_and_data_flows(silent_port: int) -> None:
    controlling, controlled = await loopback_agents(silent_port)
    try:
        await asyncio.wait_for(asyncio.gather(controlling.connect(), controlled.connect()), 10)
        await controlling.send(b"ping")
        assert await asyncio.wait_for(controlled.recv(), 5) == b"ping"
        await controlled.send(b"pong")
        assert await asyncio.wait_for(controlling.recv(), 5) == b"pong"
        # aioice's own connect() ends at its tick: checks left cancelled, consent started.
        for _ in range(100):
            if not network._FINISHING:
                break
            await asyncio.sleep(0.01)
        assert not network._FINISHING
        assert controlling._query_consent_task is not None
        # The silent pair, never checked, was removed once the other was nominated.
        assert silent_port not in [p.remote_candidate.port for p in controlling._check_list]
    finally:
        await asyncio.gather(controlling.close(), controlled.close())


async def test_closed_right_after_connecting_starts_no_consent_checks(silent_port: int) -> None:
    controlling, controlled = await loopback_agents(silent_port)
    await asyncio.wait_for(asyncio.gather(controlling.connect(), controlled.connect()), 10)
    await asyncio.gather(controlling.close(), controlled.close())
    await asyncio.sleep(0.1)  # past aioice's tick
    task = controlling._query_consent_task
    assert task is None or task.cancelled() or task.done()
