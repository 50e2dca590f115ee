"""Rate limits at the edges, per connection or caller and per client address.

Counted in this process's memory (``limits``' moving windows): each control-plane
instance limits what reaches it.  Client addresses come from the TCP peer, or from
the last ``X-Forwarded-For`` hop when the peer is a trusted proxy (loopback by
default: nginx on the same host).  A client on this machine itself (loopback, no
proxy header: tools, probes, the test suite) is exempt from the per-address
limits; per-connection and per-caller limits hold for everyone.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from schemas.errors import ApiError, ErrorCode

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCAL = "local"  # the address of a client on this machine (exempt per address)


@dataclass(frozen=True)
class RateLimitConfig:
    """Limits in ``limits``' notation ("100/second;2000/minute")."""

    socket_event: str = "100/second;2000/minute"  # events per Socket.IO connection
    socket_address: str = "500/second"  # events per client address
    connect_address: str = "300/minute"  # Socket.IO connection attempts per address
    rest_caller: str = "600/minute"  # REST requests per authenticated caller
    rest_address: str = "1200/minute"  # REST requests per client address
    auth_failure_address: str = "30/minute"  # failed authentications per address

    def validate(self) -> None:
        for name, spec in asdict(self).items():
            try:
                parse_many(spec)
            except ValueError as exc:
                raise ValueError(f"rate limit {name}={spec!r}: {exc}") from None


class RateLimited(ApiError):
    def __init__(self, limit: str, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            ErrorCode.RATE_LIMITED,
            "too many requests; retry later",
            {"retryAfter": self.retry_after},
        )


class RateLimits:
    def __init__(
        self,
        config: RateLimitConfig,
        on_limited: Callable[[str], None] = lambda _name: None,
    ) -> None:
        config.validate()
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in asdict(config).items()
        }
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._on_limited = on_limited

    async def hit(self, name: str, identifier: str) -> None:
        """Count one request; raise RateLimited when a window is full.  Per-address
        limits (``*_address``) do not apply to local clients."""
        if identifier == LOCAL and name.endswith("_address"):
            return
        for item in self._items[name]:
            if not await self._limiter.hit(item, name, identifier):
                await self._refuse(name, identifier, item)

    async def check(self, name: str, identifier: str) -> None:
        """Raise RateLimited when the window is already full, without counting."""
        if identifier == LOCAL and name.endswith("_address"):
            return
        for item in self._items[name]:
            if not await self._limiter.test(item, name, identifier):
                await self._refuse(name, identifier, item)

    async def _refuse(self, name: str, identifier: str, item: RateLimitItem) -> None:
        self._on_limited(name)
        stats = await self._limiter.get_window_stats(item, name, identifier)
        raise RateLimited(name, stats.reset_time - time.time())


def trusted_networks(specs: Iterable[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs if spec.strip())


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IpNetwork, ...]
) -> str:
    """The client's address, or LOCAL for a client on this machine."""
    try:
        peer_ip = ipaddress.ip_address(peer or "")
    except ValueError:
        return peer or "unknown"  # a Unix socket or the like
    if forwarded_for and any(peer_ip in network for network in trusted):
        last_hop = forwarded_for.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last_hop))
        except ValueError:
            return "unknown"
    return LOCAL if peer_ip.is_loopback else str(peer_ip)
