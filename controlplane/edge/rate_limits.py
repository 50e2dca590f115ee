"""Rate limits at the edges, per connection or caller and per client address.

Counted in this process's memory with sliding window counters (the algorithm of
``limits``' SlidingWindowCounterRateLimiter: this window's count plus the last
window's, weighted by how much of it the sliding window still covers; a burst
from a fresh client gets exactly the limit): each control-plane instance limits
what reaches it.  The limits are written in ``limits``' notation and parsed by
it; the counting is done here because ``limits``' in-memory asyncio storage
expires entries with one thread hop per key per pass, which cost the control
plane over 1% of a core per idle consultation (bench/capacity.py).  Client
addresses come from the TCP peer, or from the last ``X-Forwarded-For`` hop when
the peer is a trusted proxy (loopback by default: nginx on the same host).  A
client on this machine itself (loopback, no proxy header: tools, probes, the
test suite) is exempt from the per-address limits; per-connection and per-caller
limits hold for everyone.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from limits import RateLimitItem, parse_many

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


@dataclass
class _Window:
    length: float  # seconds
    start: float  # of the current fixed window
    current: int = 0
    previous: int = 0  # the count of the fixed window before it

    def advance(self, now: float) -> _Window:
        if now >= self.start + self.length:
            passed = int((now - self.start) // self.length)
            self.previous = self.current if passed == 1 else 0
            self.current = 0
            self.start += passed * self.length
        return self

    def weighted(self, now: float) -> float:
        return self.previous * (1 - (now - self.start) / self.length) + self.current


Key = tuple[str, str, int]  # limit name, identifier, which of its items


class SlidingWindows:
    """Sliding window counters in memory.  Called from the event loop only, so a
    check and its count are one step: concurrent requests cannot both slip in."""

    SWEEP_EVERY = 60.0

    def __init__(self) -> None:
        self._windows: dict[Key, _Window] = {}
        self._next_sweep = time.monotonic() + self.SWEEP_EVERY

    def _window(self, item: RateLimitItem, key: Key, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None:
            length = float(item.get_expiry())
            window = self._windows[key] = _Window(length, now - now % length)
        return window.advance(now)

    def hit(self, item: RateLimitItem, key: Key) -> bool:
        """Count one request unless the window is full."""
        now = time.monotonic()
        self._sweep(now)
        window = self._window(item, key, now)
        if window.weighted(now) + 1 > item.amount:
            return False
        window.current += 1
        return True

    def test(self, item: RateLimitItem, key: Key) -> bool:
        now = time.monotonic()
        return self._window(item, key, now).weighted(now) + 1 <= item.amount

    def retry_after(self, item: RateLimitItem, key: Key) -> float:
        """Seconds until one more request fits."""
        now = time.monotonic()
        window = self._window(item, key, now)
        room = item.amount - 1 - window.current
        if room < 0 or window.previous == 0:
            return window.start + window.length - now  # this window alone is full
        return max(0.0, window.start + window.length * (1 - room / window.previous) - now)

    def __len__(self) -> int:
        return len(self._windows)

    def _sweep(self, now: float) -> None:
        """Forget windows that count nothing any more (closed connections)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_EVERY
        self._windows = {
            key: window
            for key, window in self._windows.items()
            if now < window.start + 2 * window.length
        }


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
        self._windows = SlidingWindows()
        self._on_limited = on_limited

    async def hit(self, name: str, identifier: str) -> None:
        """Count one request; raise RateLimited when a window is full.  Per-address
        limits (``*_address``) do not apply to local clients."""
        if identifier == LOCAL and name.endswith("_address"):
            return
        for index, item in enumerate(self._items[name]):
            if not self._windows.hit(item, (name, identifier, index)):
                self._refuse(name, identifier, index)

    async def check(self, name: str, identifier: str) -> None:
        """Raise RateLimited when the window is already full, without counting."""
        if identifier == LOCAL and name.endswith("_address"):
            return
        for index, item in enumerate(self._items[name]):
            if not self._windows.test(item, (name, identifier, index)):
                self._refuse(name, identifier, index)

    def _refuse(self, name: str, identifier: str, index: int) -> None:
        self._on_limited(name)
        item = self._items[name][index]
        raise RateLimited(name, self._windows.retry_after(item, (name, identifier, index)))


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
