"""The PostgreSQL pool never makes requests wait without bound: one that finds
every connection busy waits TELEMED_DATABASE_POOL_TIMEOUT and is answered
SERVICE_UNAVAILABLE (asyncpg's pool waits for ever: a burst behind a stuck
query piled up, each in turn waiting out the query timeout)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import asyncpg
import pytest

from controlplane.clinical.db import create_pool
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def read_session(http: aiohttp.ClientSession, url: str, token: str) -> tuple[float, str]:
    started = time.monotonic()
    async with http.get(
        f"{url}/api/telemedicine/session/{uuid.uuid4()}",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        body = await response.json(content_type=None)
    return time.monotonic() - started, body.get("error", {}).get("code", str(response.status))


async def test_requests_behind_a_stuck_connection_are_refused_quickly(
    stack: Stack, instance
) -> None:
    """A control plane with one PostgreSQL connection and a 0.5 s pool timeout;
    the sessions table locked by another client (for real, ACCESS EXCLUSIVE in an
    open transaction): of 10 concurrent reads, the one holding the connection
    waits out the 5 s query timeout, the 9 queued behind it are answered
    SERVICE_UNAVAILABLE within 2 s; none is an INTERNAL_ERROR; once the lock is
    gone the same reads answer NOT_FOUND (no such session) again."""
    control = instance(TELEMED_DATABASE_POOL_SIZE="1", TELEMED_DATABASE_POOL_TIMEOUT="0.5")
    token = stack.tokens.mint_api(subject="dr-pool", role="physician")
    locker = await asyncpg.connect(stack.database_admin_url)
    async with aiohttp.ClientSession() as http:
        assert (await read_session(http, control.url, token))[1] == "NOT_FOUND"
        lock = locker.transaction()
        await lock.start()
        try:
            await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
            answers = await asyncio.gather(
                *(read_session(http, control.url, token) for _ in range(10))
            )
        finally:
            await lock.rollback()
            await locker.close()
        codes = sorted(code for _, code in answers)
        assert codes == ["SERVICE_UNAVAILABLE"] * 10, codes
        quick = [seconds for seconds, _ in answers if seconds < 2.0]
        assert len(quick) >= 9, sorted(seconds for seconds, _ in answers)
        assert (await read_session(http, control.url, token))[1] == "NOT_FOUND"


async def test_a_connection_released_inside_a_failed_transaction_comes_back_clean(
    stack: Stack,
) -> None:
    """Pooled connections are released without asyncpg's reset query (one round
    trip less per query, db.PooledConnection); a transaction left open, even a
    failed one, is still rolled back before the connection is used again."""
    pool = await create_pool(stack.database_url, min_size=1, max_size=1)
    try:
        connection = await pool.acquire()
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMPORARY TABLE left_behind (id int) ON COMMIT DROP")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await connection.execute("SELECT 1 / 0")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await connection.execute("SELECT 1")
        await pool.release(connection)
        # The same (only) connection, out of the failed transaction: what it made is gone.
        async with pool.acquire() as again:
            assert await again.fetchval("SELECT pg_backend_pid()") == backend
            assert await again.fetchval("SELECT to_regclass('pg_temp.left_behind')") is None
            assert await again.fetchval("SELECT 1") == 1
    finally:
        pool.terminate()
