"""Sliding window counters of the edge rate limits (pure logic, a fake clock)."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from controlplane.edge import rate_limits
from controlplane.edge.rate_limits import RateLimitConfig, RateLimited, RateLimits, SlidingWindows


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(rate_limits.time, "monotonic", fake)
    return fake


def test_a_burst_from_a_fresh_client_gets_exactly_the_limit(clock: Clock) -> None:
    windows = SlidingWindows()
    item = parse("10/second")
    assert [windows.hit(item, ("e", "a", 0)) for _ in range(15)] == [True] * 10 + [False] * 5
    assert not windows.test(item, ("e", "a", 0))
    assert windows.test(item, ("e", "b", 0))  # another client is counted apart


def test_the_last_window_counts_for_the_part_the_sliding_window_still_covers(
    clock: Clock,
) -> None:
    windows = SlidingWindows()
    item = parse("10/minute")
    key = ("e", "a", 0)
    clock.now = 1200.0  # the start of a window
    assert sum(windows.hit(item, key) for _ in range(10)) == 10
    clock.now = 1260.0 + 15  # a quarter into the next: 10 * 0.75 still count
    assert sum(windows.hit(item, key) for _ in range(10)) == 2
    wait = windows.retry_after(item, key)
    assert 0 < wait <= 60
    clock.now += wait + 0.01
    assert windows.hit(item, key)
    clock.now = 1200.0 + 180  # two windows later nothing counts
    assert sum(windows.hit(item, key) for _ in range(12)) == 10


def test_a_full_window_says_when_to_retry(clock: Clock) -> None:
    windows = SlidingWindows()
    item = parse("5/minute")
    clock.now = 1200.0 + 20
    for _ in range(5):
        windows.hit(item, ("e", "a", 0))
    assert windows.retry_after(item, ("e", "a", 0)) == pytest.approx(40)


def test_windows_of_gone_clients_are_forgotten(clock: Clock) -> None:
    windows = SlidingWindows()
    item = parse("10/second")
    for n in range(100):
        windows.hit(item, ("e", f"sid-{n}", 0))
    assert len(windows) == 100
    clock.now += SlidingWindows.SWEEP_EVERY + 1
    windows.hit(item, ("e", "new", 0))
    assert len(windows) == 1


def test_many_requests_at_once_never_pass_the_limit(clock: Clock) -> None:
    limits = RateLimits(RateLimitConfig(socket_event="20/second;25/minute"))

    async def burst() -> list[bool]:
        async def one() -> bool:
            try:
                await limits.hit("socket_event", "sid-1")
            except RateLimited as exc:
                assert exc.retry_after >= 1
                return False
            return True

        return await asyncio.gather(*(one() for _ in range(200)))

    assert sum(asyncio.run(burst())) == 20
    # Half a second on, half of the last second still counts (room for 10); the
    # minute's limit has room for 5.
    clock.now += 1.5
    assert sum(asyncio.run(burst())) == 5
