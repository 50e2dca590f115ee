"""PostgreSQL access (asyncpg): pools and versioned SQL migrations.

Migrations are ``controlplane/migrations/NNNN_name.sql``, applied in order, each
in its own transaction, recorded in ``schema_migrations`` with a checksum; an
advisory lock keeps concurrent runners (several control planes starting at once)
from racing.  They run as the owner role (``DATABASE_ADMIN_URL``); afterwards the
app role (``DATABASE_URL``'s user) is granted what it needs and no more: on the
audit log and its signed checkpoints only SELECT and INSERT.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK_KEY = 0x7E1E3ED  # advisory lock id for migrations


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"badly named migration {path.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps: {versions}")
    return migrations


async def migrate(admin_url: str, app_role: str | None) -> list[int]:
    """Apply pending migrations; returns the versions applied now (idempotent)."""
    connection = await asyncpg.connect(admin_url)
    applied_now: list[int] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            row["version"]: row["checksum"]
            for row in await connection.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} changed after it was applied"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.version)
            log.info("migration_applied", version=migration.version, name=migration.name)
        if app_role:
            await grant_app_role(connection, app_role)
    finally:
        try:
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await connection.close()
    return applied_now


async def grant_app_role(connection: asyncpg.Connection, role: str) -> None:
    """What the application role may do: everything it needs, audit log append-only."""
    if not _ROLE_NAME.match(role):
        raise MigrationError(f"invalid role name {role!r}")
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        raise MigrationError(f"database role {role} does not exist")
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {role}",
        f"REVOKE DELETE, TRUNCATE ON audit_head FROM {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM {role}",
    ]
    for statement in statements:
        await connection.execute(statement)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection returned without asyncpg's reset query.

    asyncpg sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release: one more round trip to PostgreSQL for each pooled query.
    Nothing here leaves session state on a pooled connection: advisory locks are
    transaction-scoped (``pg_advisory_xact_lock``), cursors live inside
    transactions, there is no LISTEN and no ``SET`` (the migration's session lock
    is on a connection of its own).  An open transaction is still rolled back on
    release (asyncpg does that apart from the query)."""

    def get_reset_query(self) -> str:
        return ""


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """A pool whose ``acquire()`` (and so ``fetch``, ``execute``...) waits at most
    ``acquire_timeout`` seconds for a free connection, then raises TimeoutError
    (an outage: ``SERVICE_UNAVAILABLE``).  asyncpg's own waits for ever, so a burst
    of requests behind a dry pool would pile up without bound.

    Waiters are served in the order they came: asyncpg's queue of connections lets
    a newcomer take a connection just released for a waiter, which then queues
    again at the end (in a burst of 300 leaves some waited past their timeout while
    later ones were served).  A FIFO semaphore of ``max_size`` turns (asyncio's is
    fair since Python 3.11) goes first, so the queue below always has one ready."""

    def __init__(self, *args: Any, acquire_timeout: float, max_size: int, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self._acquire_timeout = acquire_timeout
        self._turns = asyncio.Semaphore(max_size)
        self._granted: dict[int, Any] = {}

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:
        started = time.monotonic()
        async with asyncio.timeout(timeout):
            await self._turns.acquire()
        left = None if timeout is None else max(0.1, timeout - (time.monotonic() - started))
        try:
            connection = await super()._acquire(left)
        except BaseException:
            self._turns.release()
            raise
        self._granted[id(connection)] = connection
        return connection

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if self._granted.get(id(connection)) is connection:
                del self._granted[id(connection)]
                self._turns.release()


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float = 2.0,
    connection_class: type[asyncpg.Connection] = PooledConnection,
) -> asyncpg.Pool:
    """timeout: connecting (PostgreSQL away: fail in 2 s, not 60); command_timeout:
    each query; acquire_timeout: waiting for a free connection (BoundedPool);
    connection_class: asyncpg's own to compare (bench/database_pool.py)."""
    pool = BoundedPool(
        url,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=connection_class,
        record_class=asyncpg.Record,
        timeout=2.0,
        command_timeout=5.0,
    )
    await pool
    return pool
