"""Append-only audit trail in PostgreSQL with a hash chain.

Each entry stores ``prev_hash`` (the hash of the entry before it) and ``hash`` =
SHA-256 over a canonical encoding of its own fields and ``prev_hash``.  Altering
an entry breaks its hash; removing one breaks the next entry's ``prev_hash``;
removing the newest ones disagrees with ``audit_head``; verification, incremental
and anchored by signed checkpoints, is in audit_integrity.  Entries carry
identifiers and a data classification, never health data: ``details`` accepts
only short scalar values under known-safe keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from controlplane.clinical.audit_refusals import RefusalWindows
from schemas.errors import ApiError, ErrorCode
from schemas.ids import is_uuid

log = structlog.get_logger(__name__)

GENESIS = bytes(32)
_LOCK_KEY = 0x7E1EA0D17
_MAX_DETAIL = 120
# Entries committed in one transaction by the writer of queued entries.
_MAX_BATCH = 500
CLASSIFICATIONS = ("public", "internal", "personal", "sensitive", "confidential")


@dataclass(frozen=True)
class Actor:
    id: str | None
    role: str | None


SYSTEM = Actor("system", "system")


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(
    *,
    entry_id: int,
    at: datetime,
    actor_id: str | None,
    actor_role: str | None,
    action: str,
    outcome: str,
    resource_type: str | None,
    resource_id: str | None,
    session_id: str | None,
    classification: str,
    details: dict[str, Any],
    prev_hash: bytes,
) -> bytes:
    body = {
        "id": entry_id,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_role": actor_role,
        "action": action,
        "outcome": outcome,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "session_id": session_id,
        "classification": classification,
        "details": details,
        "prev": prev_hash.hex(),
    }
    return hashlib.sha256(_canonical(body)).digest()


def row_hash(
    row: Mapping[str, Any], prev_hash: bytes, details: dict[str, Any] | None = None
) -> bytes:
    """``entry_hash`` of a stored ``audit_log`` row (with other ``details`` if given)."""
    stored = row["details"]
    if details is None:
        details = json.loads(stored) if isinstance(stored, str) else stored
    return entry_hash(
        entry_id=row["id"],
        at=row["at"],
        actor_id=row["actor_id"],
        actor_role=row["actor_role"],
        action=row["action"],
        outcome=row["outcome"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        session_id=str(row["session_id"]) if row["session_id"] else None,
        classification=row["classification"],
        details=details,
        prev_hash=prev_hash,
    )


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, bool) or isinstance(value, int) or value is None:
            clean[key] = value
        elif isinstance(value, str):
            clean[key] = value[:_MAX_DETAIL]
        else:
            raise ValueError(f"audit detail {key!r} must be a scalar")
    return clean


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, refusals: RefusalWindows | None = None) -> None:
        self._pool = pool
        self._refusals = refusals or RefusalWindows()
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(
        self,
        actor: Actor,
        action: str,
        *,
        outcome: str = "success",
        resource_type: str | None = None,
        resource_id: str | None = None,
        session_id: str | None = None,
        classification: str = "internal",
        details: dict[str, Any] | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> int:
        """Append one entry (in ``connection``'s transaction when given) and return
        its id once it is committed.  Without a connection, entries recorded at the
        same time are committed together (one transaction, one turn of the chain's
        lock, for a burst of hundreds of leaves), each caller still waiting for its
        own entry to be stored."""
        if classification not in CLASSIFICATIONS:
            raise ValueError(f"unknown classification {classification!r}")
        clean = _clean_details(details)
        args = (
            actor,
            action,
            outcome,
            resource_type,
            resource_id,
            session_id,
            classification,
            clean,
        )
        if connection is not None:
            return await self._append(connection, *args)
        # The entry is written even if the caller is cancelled meanwhile.
        return await asyncio.shield(self._enqueue(args))

    def enqueue(
        self,
        actor: Actor,
        action: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        session_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> asyncio.Future[int]:
        """Queue one successful ``internal`` entry now (entries keep the order of
        these calls) and return what resolves to its id once it is committed, for
        a caller that has other work to do before it must know the entry is stored
        (a join: its Redis writes, then this, then its answer)."""
        return self._enqueue(
            (
                actor,
                action,
                "success",
                resource_type,
                resource_id,
                session_id,
                "internal",
                _clean_details(details),
            )
        )

    def _enqueue(self, args: tuple[Any, ...]) -> asyncio.Future[int]:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # A caller that went away (cancelled) does not leave an unread error behind.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queued.append((args, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        return done

    async def deny(
        self,
        actor: Actor,
        action: str,
        code: ErrorCode,
        message: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        session_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ApiError:
        """Audit a refused action and return the error to raise (``raise await ...``).

        The entry's details carry the error code and the caller's short reason;
        ``session_id`` is kept only when it is a session's UUID.  Repeats of the
        same refusal within a minute are counted, not written (see audit_refusals).
        """
        kind = (actor.id, actor.role, action, str(code), resource_id if actor.id else None)
        if not self._refusals.first_in_window(kind):
            return ApiError(code, message)
        await self.record(
            actor,
            action,
            outcome="denied",
            resource_type=resource_type,
            resource_id=resource_id,
            session_id=session_id if session_id and is_uuid(session_id) else None,
            details={"code": str(code), **(details or {})},
        )
        return ApiError(code, message)

    async def flush_refusals(self, *, all_windows: bool = False) -> int:
        """One summary entry per refusal kind whose window ended with repeats."""
        ended = self._refusals.ended(all_windows=all_windows)
        for index, ((actor_id, role, action, code, resource_id), repeated) in enumerate(ended):
            try:
                await self.record(
                    Actor(actor_id, role),
                    action,
                    outcome="denied",
                    resource_id=resource_id,
                    details={
                        "code": code,
                        "repeated": repeated,
                        "windowSeconds": int(self._refusals.window),
                    },
                )
            except Exception:
                for kind, count in ended[index:]:
                    self._refusals.restore(kind, count)
                raise
        return len(ended)

    async def flush_refusals_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush_refusals()
            except Exception:
                # The database away: the counts stay and go out with the next flush.
                log.warning("audit_refusal_flush_failed")

    async def _write_queued(self) -> None:
        """Write what ``record`` queued, a batch per transaction, until nothing is
        left; entries queued while a batch is written go in the next one."""
        while self._queued:
            batch = self._queued[:_MAX_BATCH]
            del self._queued[:_MAX_BATCH]
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    ids = await self._append_many(conn, [entry for entry, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), entry_id in zip(batch, ids, strict=True):
                if not done.done():
                    done.set_result(entry_id)

    async def _append(self, conn: asyncpg.Connection, *entry: Any) -> int:
        return (await self._append_many(conn, [entry]))[0]

    async def _append_many(
        self, conn: asyncpg.Connection, entries: list[tuple[Any, ...]]
    ) -> list[int]:
        """Extend the chain by ``entries`` (tuples of ``record``'s fields) in order."""
        # One writer at a time extends the chain.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        prev_hash = bytes(head["last_hash"]) if head else GENESIS
        ids = sorted(
            await conn.fetchval(
                "SELECT array_agg(nextval('audit_log_id_seq')) FROM generate_series(1, $1)",
                len(entries),
            )
        )
        rows = []
        for entry_id, entry in zip(ids, entries, strict=True):
            actor, action, outcome, resource_type, resource_id, session_id, classif, details = entry
            at = datetime.now(UTC)
            digest = entry_hash(
                entry_id=entry_id,
                at=at,
                actor_id=actor.id,
                actor_role=actor.role,
                action=action,
                outcome=outcome,
                resource_type=resource_type,
                resource_id=resource_id,
                session_id=session_id,
                classification=classif,
                details=details,
                prev_hash=prev_hash,
            )
            rows.append(
                (
                    entry_id,
                    at,
                    actor.id,
                    actor.role,
                    action,
                    outcome,
                    resource_type,
                    resource_id,
                    session_id,
                    classif,
                    json.dumps(details),
                    prev_hash,
                    digest,
                )
            )
            prev_hash = digest
        await conn.executemany(
            """INSERT INTO audit_log (id, at, actor_id, actor_role, action, outcome, resource_type,
                   resource_id, session_id, classification, details, prev_hash, hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::uuid, $10, $11::jsonb, $12, $13)""",
            rows,
        )
        await conn.execute(
            """INSERT INTO audit_head (singleton, last_id, last_hash) VALUES (true, $1, $2)
               ON CONFLICT (singleton) DO UPDATE SET last_id = $1, last_hash = $2""",
            ids[-1],
            prev_hash,
        )
        return [int(entry_id) for entry_id in ids]
