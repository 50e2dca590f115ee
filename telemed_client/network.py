"""Network helpers for Python peers: which local addresses ICE gathers on, a TURN
allocation asked again from a new port when the server answers 437 and deleted
within 2 s when the connection closes, and an
artificial one-way delay on a peer's media datagrams (a slow network for probes
and tests; this kernel has no netem)."""

from __future__ import annotations

import asyncio
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


# Deleting a TURN allocation (a refresh with lifetime 0) when an ICE connection
# closes: aioice retransmits it for about 63 s when no answer comes, and the
# connection wakes its reader (so DTLS, aiortc and the peer learn that the media
# is gone) only after that.  On a dead path, where consent expired, the peer thus
# noticed the failure a minute late.  The server frees an allocation that is not
# refreshed anyway (RFC 8656 section 6), so the deletion is given 2 s, as
# libwebrtc does not wait for it at all.
TURN_DELETE_WAIT = 2.0
_original_turn_delete = aioice.turn.TurnClientMixin.delete


async def _turn_delete_briefly(self: aioice.turn.TurnClientMixin) -> None:
    try:
        await asyncio.wait_for(_original_turn_delete(self), TURN_DELETE_WAIT)
    except TimeoutError:
        pass  # its transport was closed on the way out (aioice's finally)


aioice.turn.TurnClientMixin.delete = _turn_delete_briefly  # type: ignore[method-assign]


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
