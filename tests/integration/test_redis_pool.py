"""The control plane's Redis pool (controlplane/backends.py) against a real Redis:
it never opens more than its bound, requests that find every connection busy wait
in the order they came, a wait that outlasts the pool timeout is an outage error
(clients get SERVICE_UNAVAILABLE), and neither a timeout nor a cancelled wait
costs the pool a turn."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from controlplane.backends import OUTAGE_ERRORS, connect_redis
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def connections_named(redis: aioredis.Redis, name: str) -> int:
    """Connections Redis has open under ``name`` (CLIENT LIST): only this pool's,
    whatever else of the stack connects meanwhile."""
    return sum(1 for client in await redis.client_list() if client.get("name") == name)


async def test_a_crowd_waits_in_turn_on_two_connections(
    stack: Stack, redis: aioredis.Redis
) -> None:
    """40 requests at once, each holding a connection 50 ms (a real BLPOP that
    times out), on a pool of 2: all answered, in the order they were sent (each
    finishes within one pair of its place), with never more than 2 connections
    open to Redis."""
    client = connect_redis(stack.redis_url, max_connections=2, pool_timeout=5)
    name = f"pool-test-{time.monotonic_ns()}"
    client.connection_pool.connection_kwargs["client_name"] = name  # sent as each connects
    key = f"pool-test:{name}"
    finished: list[int] = []
    peak = 0
    counting = asyncio.Lock()  # the counting client keeps to its one connection

    async def request(index: int) -> None:
        nonlocal peak
        assert await client.blpop([key], timeout=0.05) is None
        finished.append(index)
        async with counting:
            peak = max(peak, await connections_named(redis, name))

    try:
        await asyncio.gather(*(request(i) for i in range(40)))
    finally:
        await client.aclose()
    assert sorted(finished) == list(range(40))
    assert max(abs(place - index) for place, index in enumerate(finished)) <= 2, finished
    assert peak == 2  # both used, never a third


async def test_a_wait_past_the_pool_timeout_is_an_outage_and_the_turn_comes_back(
    stack: Stack,
) -> None:
    """One connection, taken from the pool and held: a GET behind it fails once the
    0.2 s pool timeout is out, with an error the control plane treats as an outage
    (not a hang, not an INTERNAL_ERROR); five more waiters are cancelled.  Once the
    connection is given back, GETs are answered: no turn was lost."""
    client = connect_redis(stack.redis_url, max_connections=1, pool_timeout=0.2)
    key = f"pool-test:{time.monotonic_ns()}"
    pool = client.connection_pool
    try:
        held = await pool.get_connection()
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError) as refused:
            await client.get(key)
        waited = time.monotonic() - started
        assert isinstance(refused.value, OUTAGE_ERRORS)
        assert waited >= 0.19, waited
        waiters = [asyncio.create_task(client.get(key)) for _ in range(5)]
        await asyncio.sleep(0.05)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert all(waiter.cancelled() for waiter in waiters)
        await pool.release(held)
        for _ in range(3):
            assert await client.set(key, "back") is True
            assert await client.get(key) == "back"
    finally:
        await client.delete(key)
        await client.aclose()
