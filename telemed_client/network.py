"""Network helpers for Python peers: which local addresses ICE gathers on, a TURN
allocation asked again from a new port when the server answers 437, ICE that is
connected when its checks say so (not at aioice's next pacing tick), and an
artificial one-way delay on a peer's media datagrams (a slow network for probes
and tests; this kernel has no netem)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterable
from typing import Any

import aioice.ice
import aioice.stun
import aioice.turn


def restrict_ice_host_addresses(addresses: Iterable[str]) -> None:
    """Make aioice gather host candidates only on these addresses.

    aioice skips 127.0.0.1 when it enumerates interfaces; tests on loopback
    (or inside a network namespace) name the addresses to use instead.
    """
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


# 437 Allocation Mismatch (RFC 8656): the TURN server still holds an allocation for
# this client address and port, made by an earlier socket that got the same port
# and went away without deleting it (until its lifetime, 10 minutes, ends).  aioice
# gives up on the server, and a relay-only peer is left with no candidate at all:
# a transport that never connects (seen in full test runs: a relay-only peer got
# no video).  Like libwebrtc's TURN port, ask again from a new local port.
ALLOCATION_MISMATCH = 437
TURN_ALLOCATE_ATTEMPTS = 3
_original_create_turn_endpoint = aioice.turn.create_turn_endpoint


async def _turn_endpoint_from_a_new_port(*args: Any, **kwargs: Any) -> Any:
    for _ in range(TURN_ALLOCATE_ATTEMPTS - 1):
        try:
            return await _original_create_turn_endpoint(*args, **kwargs)
        except aioice.stun.TransactionFailed as exc:
            if exc.response.attributes.get("ERROR-CODE", (0, ""))[0] != ALLOCATION_MISMATCH:
                raise
    return await _original_create_turn_endpoint(*args, **kwargs)  # the last: its error goes up


aioice.turn.create_turn_endpoint = _turn_endpoint_from_a_new_port


# aioice paces its connectivity checks (one started every 20 ms, RFC 8445's Ta) and
# its connect() sleeps 20 ms after starting each before it looks at the outcome:
# with a host and a relay pair to an ICE-lite SFU the host pair was nominated in
# 1-5 ms on loopback, and connect() (with DTLS after it) still waited for the next
# tick.  Here connect() returns once the check list is completed (every component
# nominated); aioice's own connect() goes on in the background to its next tick,
# where it cancels the checks left and starts the consent checks, as before.
# Failure is still reported by aioice's connect() itself.
_original_connect = aioice.ice.Connection.connect
_original_check_complete = aioice.ice.Connection.check_complete
_COMPLETED: weakref.WeakKeyDictionary[Any, asyncio.Future[None]] = weakref.WeakKeyDictionary()
_FINISHING: set[asyncio.Task[None]] = set()


def _check_complete_and_tell(self: aioice.ice.Connection, pair: Any) -> None:
    _original_check_complete(self, pair)
    waiter = _COMPLETED.get(self)
    nominated = self._nominated and len(self._nominated) == len(self._components)
    if waiter is not None and not waiter.done() and self._check_list_done and nominated:
        waiter.set_result(None)


async def _finish_connect(self: aioice.ice.Connection, run: asyncio.Task[None]) -> None:
    with contextlib.suppress(Exception):
        await run
    if self._closing and self._query_consent_task is not None:
        self._query_consent_task.cancel()  # closed before aioice's tick: no consent checks


async def _connect_when_completed(self: aioice.ice.Connection) -> None:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _COMPLETED[self] = waiter
    run = asyncio.ensure_future(_original_connect(self))
    try:
        await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        run.cancel()
        raise
    finally:
        _COMPLETED.pop(self, None)
    if run.done():
        return run.result()
    finishing = asyncio.ensure_future(_finish_connect(self, run))
    _FINISHING.add(finishing)
    finishing.add_done_callback(_FINISHING.discard)


aioice.ice.Connection.check_complete = _check_complete_and_tell  # type: ignore[method-assign]
aioice.ice.Connection.connect = _connect_when_completed  # type: ignore[method-assign]


# Extra one-way delay (seconds) per aioice connection: a simulated slow network
# for probes and tests.  Datagrams really leave late (scheduled on the loop).
_SEND_DELAY: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_original_send_data = aioice.ice.StunProtocol.send_data


async def _delayed_send_data(
    self: aioice.ice.StunProtocol, data: bytes, addr: tuple[str, int]
) -> None:
    delay = _SEND_DELAY.get(self.receiver, 0.0)
    if delay <= 0:
        await _original_send_data(self, data, addr)
        return
    asyncio.get_running_loop().call_later(delay, self.transport.sendto, data, addr)


aioice.ice.StunProtocol.send_data = _delayed_send_data  # type: ignore[method-assign]


def set_send_delay(connections: Iterable[Any], seconds: float) -> None:
    """Delay every datagram these aioice connections send by ``seconds`` (0 removes it)."""
    for connection in connections:
        if seconds > 0:
            _SEND_DELAY[connection] = seconds
        else:
            _SEND_DELAY.pop(connection, None)


def ice_connections(peer_connections: Iterable[Any]) -> set[Any]:
    """The aioice connections under these aiortc RTCPeerConnections (None skipped)."""
    connections = set()
    for pc in peer_connections:
        if pc is None:
            continue
        for transceiver in pc.getTransceivers():
            dtls = transceiver.sender.transport or transceiver.receiver.transport
            if dtls is not None:
                connections.add(dtls.transport._connection)
    return connections
