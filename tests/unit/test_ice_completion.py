"""telemed_client.network: aioice's connect() returns once its check list is
completed, not at its next 20 ms pacing tick.  Two real aioice agents on
loopback, the controlled one offering a second candidate that answers nothing
(as a relay candidate would, later): the connection is made, data flows both
ways, aioice finishes its own connect() in the background, and a connection
closed right after connecting starts no consent checks."""

from __future__ import annotations

import asyncio
import socket

import aioice
import pytest

from telemed_client import network


def silent_candidate(port: int) -> aioice.Candidate:
    """A lower-priority host candidate whose port answers nothing."""
    return aioice.Candidate(
        foundation="silent",
        component=1,
        transport="udp",
        priority=1,
        host="127.0.0.1",
        port=port,
        type="host",
    )


async def pair(silent_port: int) -> tuple[aioice.Connection, aioice.Connection]:
    network.restrict_ice_host_addresses(["127.0.0.1"])
    controlling = aioice.Connection(ice_controlling=True, components=1)
    controlled = aioice.Connection(ice_controlling=False, components=1)
    await asyncio.gather(controlling.gather_candidates(), controlled.gather_candidates())
    for local, remote in ((controlling, controlled), (controlled, controlling)):
        local.remote_username = remote.local_username
        local.remote_password = remote.local_password
        for candidate in remote.local_candidates:
            await local.add_remote_candidate(candidate)
    await controlling.add_remote_candidate(silent_candidate(silent_port))
    for local in (controlling, controlled):
        await local.add_remote_candidate(None)
    return controlling, controlled


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
    controlling, controlled = await pair(silent_port)
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
    controlling, controlled = await pair(silent_port)
    await asyncio.wait_for(asyncio.gather(controlling.connect(), controlled.connect()), 10)
    await asyncio.gather(controlling.close(), controlled.close())
    await asyncio.sleep(0.1)  # past aioice's tick
    task = controlling._query_consent_task
    assert task is None or task.cancelled() or task.done()
