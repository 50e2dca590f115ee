"""Verification of the audit hash chain, incremental and anchored.

A periodic job walks only the entries appended since the newest signed
checkpoint, then signs a new checkpoint (HMAC-SHA256 over the last entry's id and
hash, with a key derived from the control plane's data key: the database does not
hold it).  Every verification also checks every checkpoint against the row it
names, so rows rewritten with every later hash recomputed (a chain that is
consistent again) are detected: the rewritten hash no longer matches what was
signed.  A full walk from the first entry (on a slower schedule, or
``telemed audit verify``) detects an old entry altered without recomputing hashes.
Each result is stored in ``audit_verifications``; the compliance health endpoint
reads the newest ones instead of walking the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from controlplane.clinical.audit import GENESIS, row_hash
from controlplane.clinical.field_crypto import FieldCipher

log = structlog.get_logger(__name__)

_PURPOSE = "telemed audit checkpoint v1"


@dataclass
class ChainStatus:
    scope: str
    status: str = "ok"
    entries: int = 0
    last_id: int | None = None
    first_bad_id: int | None = None
    reason: str | None = None
    checkpoints: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def broken(self, entry_id: int | None, reason: str) -> ChainStatus:
        if self.ok:  # the first finding is the one reported
            self.status, self.first_bad_id, self.reason = "broken", entry_id, reason
        return self

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "scope": self.scope,
            "entries": self.entries,
            "lastId": self.last_id,
            "checkpoints": self.checkpoints,
        }
        if not self.ok:
            out.update(firstBadId=self.first_bad_id, reason=self.reason)
        return out


class AuditIntegrity:
    def __init__(
        self,
        pool: asyncpg.Pool,
        cipher: FieldCipher,
        on_result: Callable[[ChainStatus], None] | None = None,
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._on_result = on_result
        self._newest_checkpoint_seen = 0

    def _mac(self, key_id: int, last_id: int, last_hash: bytes) -> bytes:
        key = self._cipher.derived_key(_PURPOSE, key_id)
        return hmac.new(key, f"{last_id}:".encode() + last_hash, hashlib.sha256).digest()

    async def verify(self, *, full: bool = False, record: bool = True) -> ChainStatus:
        """Check the checkpoints, walk the chain (from the newest checkpoint, or from
        the start when ``full``); when ``record``, sign a new checkpoint if all is
        well and store the result.  Without ``record`` (a health request) only the
        newest checkpoint is checked, so the cost does not grow with the log."""
        status = ChainStatus("full" if full else "incremental")
        async with self._pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read"):
                start = await self._check_checkpoints(conn, status, every=record)
                if full:
                    start = (0, GENESIS)
                if status.ok:
                    await _walk(conn, status, *start)
            last_hash = status.details.pop("lastHash", None)
            if not record:
                return status
            if status.ok and status.last_id is not None and status.last_id > start[0]:
                await self._sign(conn, status.last_id, bytes(last_hash))
            await conn.execute(
                """INSERT INTO audit_verifications (scope, status, entries, first_bad_id, reason)
                   VALUES ($1, $2, $3, $4, $5)""",
                status.scope,
                status.status,
                status.entries,
                status.first_bad_id,
                status.reason,
            )
        if not status.ok:
            log.error("audit_chain_broken", **status.body())
        if self._on_result is not None:
            self._on_result(status)
        return status

    async def _check_checkpoints(
        self, conn: asyncpg.Connection, status: ChainStatus, *, every: bool
    ) -> tuple[int, bytes]:
        rows = await conn.fetch(
            """SELECT c.id, c.last_id, c.last_hash, c.key_id, c.mac, a.hash AS row_hash
               FROM audit_checkpoints c LEFT JOIN audit_log a ON a.id = c.last_id
               WHERE $1 OR c.id = (SELECT max(id) FROM audit_checkpoints)
               ORDER BY c.id""",
            every,
        )
        start: tuple[int, bytes] = (0, GENESIS)
        newest = rows[-1]["id"] if rows else 0
        if newest < self._newest_checkpoint_seen:
            status.broken(None, "signed checkpoints were removed")
        self._newest_checkpoint_seen = max(self._newest_checkpoint_seen, newest)
        for row in rows:
            last_id, last_hash = int(row["last_id"]), bytes(row["last_hash"])
            try:
                expected = self._mac(row["key_id"], last_id, last_hash)
            except KeyError:
                continue  # signed with a data key retired since: it cannot be checked
            status.checkpoints += 1
            if not hmac.compare_digest(expected, bytes(row["mac"])):
                status.broken(last_id, "a signed checkpoint was altered")
            elif row["row_hash"] is None:
                status.broken(last_id, "entries up to a signed checkpoint were removed")
            elif bytes(row["row_hash"]) != last_hash:
                status.broken(
                    last_id,
                    "entries up to this one were rewritten (the chain no longer matches "
                    "a signed checkpoint)",
                )
            if not status.ok:
                break
            start = (last_id, last_hash)
        return start

    async def _sign(self, conn: asyncpg.Connection, last_id: int, last_hash: bytes) -> None:
        key_id = self._cipher.current_key_id
        checkpoint = await conn.fetchval(
            """INSERT INTO audit_checkpoints (last_id, last_hash, key_id, mac)
               VALUES ($1, $2, $3, $4) RETURNING id""",
            last_id,
            last_hash,
            key_id,
            self._mac(key_id, last_id, last_hash),
        )
        self._newest_checkpoint_seen = max(self._newest_checkpoint_seen, int(checkpoint))
        # Also in the log, which is shipped off the database host: a second anchor.
        log.info("audit_checkpoint", checkpoint=checkpoint, last_id=last_id, hash=last_hash.hex())

    async def latest(self) -> dict[str, Any]:
        """The newest result of each scope (for the health endpoint and metrics)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT DISTINCT ON (scope) scope, at, status, entries, first_bad_id, reason
                   FROM audit_verifications ORDER BY scope, id DESC"""
            )
        return {
            row["scope"]: {
                "status": row["status"],
                "at": row["at"].isoformat(),
                "entries": row["entries"],
                **(
                    {"firstBadId": row["first_bad_id"], "reason": row["reason"]}
                    if row["status"] != "ok"
                    else {}
                ),
            }
            for row in rows
        }

    async def run(self, interval: float, full_every: float) -> None:
        """Incremental every ``interval`` seconds, a full walk every ``full_every``
        counted from the last one stored (by any instance), so that restarts do not
        each walk the whole log; the first ever one a minute after start."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + 60.0
        try:
            async with self._pool.acquire() as conn:
                age = await conn.fetchval(
                    """SELECT extract(epoch FROM now() - max(at)) FROM audit_verifications
                       WHERE scope = 'full'"""
                )
            if age is not None:
                next_full = loop.time() + max(0.0, full_every - float(age))
        except Exception:
            log.warning("audit_verification_schedule_unknown")
        while True:
            full = loop.time() >= next_full
            try:
                await self.verify(full=full)
                if full:
                    next_full = loop.time() + full_every
            except Exception:
                log.warning("audit_verification_failed", full=full)
            await asyncio.sleep(interval)


async def _walk(conn: asyncpg.Connection, status: ChainStatus, after: int, prev: bytes) -> None:
    previous = prev
    last_id: int | None = after or None
    async for row in conn.cursor("SELECT * FROM audit_log WHERE id > $1 ORDER BY id", after):
        status.entries += 1
        if bytes(row["prev_hash"]) != previous:
            status.broken(row["id"], "an entry before this one was removed or altered")
            return
        expected = row_hash(row, previous)
        if bytes(row["hash"]) != expected:
            status.broken(row["id"], "this entry was altered")
            return
        previous = expected
        last_id = row["id"]
    head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
    if head is not None and (head["last_id"] != last_id or bytes(head["last_hash"]) != previous):
        status.broken(head["last_id"], "entries at the end of the log were removed")
        return
    if head is None and last_id is not None:
        status.broken(None, "the chain head is missing")
        return
    status.last_id = last_id
    status.details["lastHash"] = previous
