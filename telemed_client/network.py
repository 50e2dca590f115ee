"""Network helpers for Python peers: which local addresses ICE gathers on, and an
artificial one-way delay on a peer's media datagrams (a slow network for probes
and tests; this kernel has no netem)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

import aioice.ice


def restrict_ice_host_addresses(addresses: Iterable[str]) -> None:
    """Make aioice gather host candidates only on these addresses.

    aioice skips 127.0.0.1 when it enumerates interfaces; tests on loopback
    (or inside a network namespace) name the addresses to use instead.
    """
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


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
