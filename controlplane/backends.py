"""Connections to Redis and PostgreSQL with timeouts on every call, and the
errors that mean one of them is away (clients get ``SERVICE_UNAVAILABLE``)."""

from __future__ import annotations

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


def connect_redis(
    url: str, *, max_connections: int = 256, pool_timeout: float = 2.0
) -> aioredis.Redis:
    """A client whose pool holds at most ``max_connections``; a request that finds
    them all busy waits up to ``pool_timeout`` seconds for one (redis-py's default
    pool raises at once: a burst of requests failed), then fails as an outage."""
    pool = aioredis.BlockingConnectionPool.from_url(
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
