"""TURN: the control plane hands out coturn REST credentials with every ICE
set-up, coturn (the real one) accepts them, a relay-only Python peer sends and
receives media through it, and the TURN server's state is in the health
endpoints (and follows a stopped coturn)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import Instance, cut_socket_of
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration

RELAY_PORTS = range(51000, 52000)  # the test coturn's relay range (tests/conftest.py)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def _allocate(server: dict[str, Any], transport: str) -> tuple[str, int]:
    """A real TURN allocation on the test coturn with these credentials."""
    url = next(u for u in server["urls"] if u.endswith(f"transport={transport}"))
    host, port = re.match(r"turn:([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    relay, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        (host, int(port)),
        server["username"],
        server["credential"],
        transport=transport,
    )
    try:
        address: tuple[str, int] = relay.get_extra_info("sockname")
        return address
    finally:
        relay.close()


def _coturn_relay_ports() -> set[int]:
    """UDP ports of coturn's relay range in use right now (its allocations)."""
    out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if "turnserver" not in line:
            continue
        port = int(line.split()[3].rsplit(":", 1)[1])
        if port in RELAY_PORTS:
            ports.add(port)
    return ports


async def test_every_ice_setup_carries_turn_credentials_that_coturn_accepts(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    peer = MediaPeer(stack.url, stack.token(room, "pt-turn-creds", "patient"))
    peers.append(peer)
    await peer.connect()
    await peer.join(room)
    ack = await peer.request("createTransport", {"direction": "send"})

    [server] = ack["iceServers"]
    assert server["urls"] == [
        f"turn:127.0.0.1:{stack.turn_port}?transport=udp",
        f"turn:127.0.0.1:{stack.turn_port}?transport=tcp",
    ]
    expiry, _tag = server["username"].split(":")
    # As long as a room token (the stack's default TTL, 4 h), and no participant id in it.
    assert abs(int(expiry) - (time.time() + 4 * 3600)) < 60
    assert "pt-turn-creds" not in server["username"]
    expected = hmac.new(stack.turn_secret.encode(), server["username"].encode(), hashlib.sha1)
    assert server["credential"] == base64.b64encode(expected.digest()).decode()
    for transport in ("udp", "tcp"):
        host, port = await _allocate(server, transport)
        assert host == "127.0.0.1" and port in RELAY_PORTS

    # A restart of ICE and a resume bring new credentials too.
    restarted = await peer.request("restartIce", {"transportId": ack["id"]})
    assert restarted["iceServers"][0]["urls"] == server["urls"]
    await _allocate(restarted["iceServers"][0], "udp")
    cut_socket_of(peer)  # a dropped link: the client resumes on a new connection
    resumed = await peer.wait_for_event("resumed")
    await _allocate(resumed["iceServers"][0], "udp")


async def test_a_forged_or_expired_credential_is_refused_by_coturn(stack: Stack) -> None:
    now = int(time.time())
    forged = {
        "urls": [f"turn:127.0.0.1:{stack.turn_port}?transport=udp"],
        "username": f"{now + 3600}:forged",
        "credential": base64.b64encode(b"not the hmac of the username").decode(),
    }
    username = f"{now - 60}:expired"
    password = hmac.new(stack.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
    expired = {**forged, "username": username, "credential": base64.b64encode(password).decode()}
    for server in (forged, expired):
        for _attempt in range(3):
            with pytest.raises(stun.TransactionFailed) as refused:
                await _allocate(server, "udp")
            code = refused.value.response.attributes["ERROR-CODE"][0]
            # 437 (allocation mismatch): the client's new ephemeral port is one an
            # earlier client (another test, a health check) still holds an
            # allocation from on coturn; a new port asks again.
            if code != 437:
                break
        assert code == 401


async def test_relay_only_peers_see_and_hear_each_other_through_coturn(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    doctor = MediaPeer(
        stack.url, stack.token(room, "dr-relay", "physician"), ice_transport_policy="relay"
    )
    patient = MediaPeer(
        stack.url, stack.token(room, "pt-relay", "patient"), ice_transport_policy="relay"
    )
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)

    await doctor.wait_for_frames("pt-relay", "video", count=15)
    await patient.wait_for_frames("dr-relay", "video", count=15)
    await patient.wait_for_frames("dr-relay", "audio", count=15)
    for peer in (doctor, patient):
        types = peer.ice_candidate_types()
        assert types == {"gathered": {"relay"}, "selected": {"relay"}}, types
    # Four transports, each with its allocation on coturn.
    assert len(_coturn_relay_ports()) >= 4


async def _health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as response:
        return {**await response.json(), "http": response.status}


async def _wait_turn(url: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _health(url)
        if body["turn"] == status or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_health_shows_the_turn_server_and_the_servers_endpoint_details_it(
    stack: Stack, api: Api
) -> None:
    body = await _wait_turn(stack.url, "ok")
    assert body["turn"] == "ok" and body["http"] == 200

    servers = await api.admin("GET", "health/servers")
    assert servers.status == 200, servers.body
    checks = servers.body["turn"]["checks"]
    assert {(c["transport"], c["status"]) for c in checks} == {("udp", "ok"), ("tcp", "ok")}
    assert all(c["rttMs"] is not None and c["port"] == stack.turn_port for c in checks)
    assert [node["id"] for node in servers.body["sfuNodes"]] == ["sfu-test-1"]
    # Whether this instance holds an RPC connection to it (made with the first room).
    assert isinstance(servers.body["sfuNodes"][0]["connected"], bool)

    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as response:
        exported = await response.text()
    for transport in ("udp", "tcp"):
        gauge = (
            f'telemed_turn_server_up{{server="127.0.0.1:{stack.turn_port}",'
            f'transport="{transport}"}} 1.0'
        )
        assert gauge in exported

    patient = await api.call("GET", "health/servers", api.token("pt-1", "patient"))
    assert (patient.status, patient.code) == (403, "FORBIDDEN")
    anonymous = await api.call("GET", "health/servers", None)
    assert (anonymous.status, anonymous.code) == (401, "UNAUTHORIZED")


async def test_a_stopped_turn_server_shows_in_health_and_recovers(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    """SIGSTOP coturn: the next check reports it unreachable (the instance stays
    ready: direct media still works); SIGCONT: ok again."""
    own = instance(TELEMED_TURN_CHECK_INTERVAL="0.5")
    assert (await _wait_turn(own.url, "ok"))["turn"] == "ok"
    os.kill(stack.turn.proc.pid, signal.SIGSTOP)
    try:
        down = await _wait_turn(own.url, "unreachable")
    finally:
        os.kill(stack.turn.proc.pid, signal.SIGCONT)
    assert (down["turn"], down["http"], down["status"]) == ("unreachable", 200, "ok")
    assert (await _wait_turn(own.url, "ok"))["turn"] == "ok"


async def test_a_wrong_turn_secret_shows_as_refused_credentials(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    own = instance(TELEMED_TURN_SECRET=secrets.token_urlsafe(24), TELEMED_TURN_CHECK_INTERVAL="1")
    assert (await _wait_turn(own.url, "auth_failed"))["turn"] == "auth_failed"
