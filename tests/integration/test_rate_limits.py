"""Rate limits at the edges: per client address (through the trusted proxy's
X-Forwarded-For, as behind nginx), per connection and per caller; failed
authentication limited per address; refusals audited without one row each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import Instance

pytestmark = pytest.mark.integration

LIMITS = {
    "TELEMED_RATE_SOCKET_EVENT": "20/second",
    "TELEMED_RATE_AUTH_FAILURE_ADDRESS": "5/minute",
    "TELEMED_RATE_CONNECT_ADDRESS": "8/minute",
    "TELEMED_RATE_SOCKET_ADDRESS": "30/second",
    "TELEMED_RATE_REST_ADDRESS": "30/minute",
    "TELEMED_RATE_REST_CALLER": "12/minute",
}


def audit_rows(stack: Stack, action: str, since: float) -> list[str]:
    """details of the audit entries for ``action`` written since ``since``."""
    out = stack.psql(
        "SELECT details::text FROM audit_log WHERE action = "
        f"'{action}' AND at >= to_timestamp({since}) ORDER BY id"
    )
    return [line for line in out.splitlines() if line]


async def rest(
    http: aiohttp.ClientSession, url: str, address: str, token: str
) -> tuple[int, str | None, str | None]:
    async with http.get(
        f"{url}/api/telemedicine/health/servers",
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": address},
    ) as response:
        body = await response.json(content_type=None)
        return (
            response.status,
            body.get("error", {}).get("code"),
            response.headers.get("Retry-After"),
        )


async def test_failed_rest_authentication_floods_get_429_and_two_audit_rows(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    cp = instance(**LIMITS)
    since = time.time() - 1
    good = stack.tokens.mint_api(subject="coord-1", role="coordinator", clinic="clinic-1")
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(
            *(rest(http, cp.url, "203.0.113.7", "not-a-token") for _ in range(25))
        )
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [401] * 5 + [429] * 20, statuses
        assert all(
            code == "RATE_LIMITED" and retry and int(retry) >= 1
            for status, code, retry in answers
            if status == 429
        )
        # Past its failure limit, the address is refused even with a good token...
        assert (await rest(http, cp.url, "203.0.113.7", good))[:2] == (429, "RATE_LIMITED")
        # ...while another address is served.
        assert (await rest(http, cp.url, "203.0.113.8", good))[0] == 200

    # One row when each refusal kind started; the repeats are counted in a summary
    # written when the window ends (here: at shutdown).
    assert len(audit_rows(stack, "api.auth", since)) == 1
    assert len(audit_rows(stack, "api.rate_limited", since)) == 1
    await asyncio.to_thread(cp.process.stop)
    auth = audit_rows(stack, "api.auth", since)
    limited = audit_rows(stack, "api.rate_limited", since)
    assert len(auth) == 2 and '"repeated": 4' in auth[1], auth
    assert len(limited) == 2 and '"repeated": 20' in limited[1], limited
    assert "203.0.113" not in " ".join(auth + limited)  # no client address in the audit


async def test_rest_requests_are_limited_per_caller_and_per_address(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    cp = instance(**LIMITS)
    one = stack.tokens.mint_api(subject="coord-1", role="coordinator", clinic="clinic-1")
    other = stack.tokens.mint_api(subject="coord-2", role="coordinator", clinic="clinic-1")
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(
            *(rest(http, cp.url, "203.0.113.20", one) for _ in range(20))
        )
        assert sorted(status for status, _, _ in answers) == [200] * 12 + [429] * 8
        # The same caller from another address: still its own limit.
        assert (await rest(http, cp.url, "203.0.113.21", one))[:2] == (429, "RATE_LIMITED")
        # Another caller from the first address: the address has room left (30/minute).
        assert (await rest(http, cp.url, "203.0.113.20", other))[0] == 200
        answers = await asyncio.gather(
            *(rest(http, cp.url, "203.0.113.20", other) for _ in range(15))
        )
        # 21 of the address's 30 were used; the address limit refuses the rest.
        assert sorted(status for status, _, _ in answers) == [200] * 9 + [429] * 6


async def socket_connect(url: str, address: str, token: str) -> dict[str, Any] | None:
    """None when connected, else the refusal's data {code, message}."""
    client = socketio.AsyncClient(reconnection=False)
    refusal: dict[str, Any] = {}

    @client.on("connect_error")
    async def _refused(data: Any = None) -> None:
        refusal.update((data or {}).get("data") or {})

    try:
        await client.connect(
            url,
            headers={"X-Forwarded-For": address},
            auth={"token": token},
            transports=["websocket"],
        )
    except socketio.exceptions.ConnectionError:
        return refusal
    await client.disconnect()
    return None


async def test_failed_socket_authentication_is_limited_per_address(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    cp = instance(**LIMITS)
    room = new_room_id()
    good = stack.token(room, "pt-limit", "patient")
    refusals = [await socket_connect(cp.url, "203.0.113.30", "bad") for _ in range(7)]
    codes = [r["code"] if r else None for r in refusals]
    assert codes == ["UNAUTHORIZED"] * 5 + ["RATE_LIMITED"] * 2, codes
    assert (await socket_connect(cp.url, "203.0.113.30", good) or {}).get("code") == "RATE_LIMITED"
    assert await socket_connect(cp.url, "203.0.113.31", good) is None
    # Connection attempts per address (8/minute), whatever the token.
    attempts = [await socket_connect(cp.url, "203.0.113.32", good) for _ in range(10)]
    assert [a["code"] if a else "ok" for a in attempts] == ["ok"] * 8 + ["RATE_LIMITED"] * 2


async def test_a_connection_flooding_events_is_limited_and_the_call_goes_on(
    stack: Stack, instance: Callable[..., Instance], peers: list[MediaPeer]
) -> None:
    cp = instance(**LIMITS)
    since = time.time() - 1
    room = new_room_id()
    doctor = MediaPeer(cp.url, stack.token(room, "dr-flood", "physician"))
    patient = MediaPeer(cp.url, stack.token(room, "pt-flood", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    track = await doctor.wait_for_frames("pt-flood", "video", count=5)
    # The join's own events leave the window (a sliding window counter still
    # weighs the last fixed second: two seconds on it counts nothing of them).
    await asyncio.sleep(2.1)

    acks = await asyncio.gather(
        *(patient.sio.call("getRouterRtpCapabilities", {}, timeout=10) for _ in range(120))
    )
    codes = [(ack.get("error") or {}).get("code") for ack in acks]
    served = codes.count(None)
    assert 20 <= served <= 40 and codes.count("RATE_LIMITED") == 120 - served, codes
    # The other connection is not slowed, and media keeps flowing both ways.
    ack = await doctor.sio.call("getRouterRtpCapabilities", {}, timeout=10)
    assert "error" not in ack
    before = track.frames
    await asyncio.sleep(1.0)
    assert track.frames > before + 5
    # A second later the flooding connection is served again.
    assert "error" not in await patient.sio.call("getRouterRtpCapabilities", {}, timeout=10)
    rows = audit_rows(stack, "signaling.getRouterRtpCapabilities", since)
    assert len(rows) == 1 and "RATE_LIMITED" in rows[0], rows


async def test_socket_events_are_limited_per_address_across_its_connections(
    stack: Stack, instance: Callable[..., Instance]
) -> None:
    """Two connections from one address, each under its own limit (20/s), together
    over the address's (30/s); a third address is not affected."""
    cp = instance(**LIMITS)
    room = new_room_id()
    clients = []
    for address in ("203.0.113.40", "203.0.113.40", "203.0.113.41"):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            cp.url,
            headers={"X-Forwarded-For": address},
            auth={"token": stack.token(room, f"pt-{len(clients)}", "patient")},
            transports=["websocket"],
        )
        clients.append(client)
    try:
        await asyncio.sleep(1.1)  # the connect handshakes leave the window
        acks = await asyncio.gather(
            *(
                client.call("getRouterRtpCapabilities", {}, timeout=10)
                for client in clients[:2]
                for _ in range(20)
            )
        )
        limited = [(a.get("error") or {}).get("code") for a in acks].count("RATE_LIMITED")
        assert 10 <= limited <= 20, acks  # 40 sent, 30 per second pass
        other = await clients[2].call("getRouterRtpCapabilities", {}, timeout=10)
        assert (other.get("error") or {}).get("code") != "RATE_LIMITED", other
    finally:
        for client in clients:
            await client.disconnect()
