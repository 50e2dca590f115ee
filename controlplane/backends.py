"""Connections to Redis and PostgreSQL with timeouts on every call, and the
errors that mean one of them is away (clients get ``SERVICE_UNAVAILABLE``)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# A Redis call gives up after about 1 s (one retry of 0.5 s): a join during an
# outage is refused well within 2 s instead of hanging.
REDIS_SOCKET_TIMEOUT = 0.5

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class FairConnectionPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool with requests served in the order they came.

    Its own waiting is a condition variable: a waiter woken by a release must take
    the condition's lock again, a request arriving meanwhile can take the freed
    connection first, and the woken waiter goes back to the end of the queue.  In
    a burst (300 leaves at once on 20 connections) some requests were overtaken
    again and again until their 2 s ran out.  Here a FIFO semaphore (asyncio's is
    fair since Python 3.11) hands out turns first, so a request waits only for
    the ones ahead of it; the pool below then always has a connection for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(self.max_connections)
        self._granted: dict[int, Any] = {}

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                await self._turns.acquire()
        except TimeoutError as err:
            raise redis.exceptions.ConnectionError("No connection available.") from err
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._turns.release()
            raise
        self._granted[id(connection)] = connection
        return connection

    async def release(self, connection: Any) -> None:
        try:
            await super().release(connection)
        finally:
            if self._granted.get(id(connection)) is connection:
                del self._granted[id(connection)]
                self._turns.release()


def connect_redis(
    url: str, *, max_connections: int = 256, pool_timeout: float = 2.0
) -> aioredis.Redis:
    """A client whose pool holds at most ``max_connections``; a request that finds
    them all busy waits, in turn, up to ``pool_timeout`` seconds for one (redis-py's
    default pool raises at once: a burst of requests failed), then fails as an
    outage."""
    pool = FairConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        decode_responses=True,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=10,
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client
