"""Session lifecycle: start, end, and the limits that end sessions on their own
(maximum duration per type, inactivity, revoked teleconsultation consent).

Ending a session closes its live room through ``LiveRooms`` (the media
membership service in the running app).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import structlog

from controlplane.auth import ApiClaims
from controlplane.clinical.audit import SYSTEM, Actor, AuditLog
from controlplane.clinical.consents import ConsentStore
from controlplane.clinical.licences import LicenceGate
from controlplane.clinical.session_access import SessionAccess, actor_of
from controlplane.clinical.session_store import SessionStore
from controlplane.clinical.session_types import MAX_DURATION
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class LiveRooms(Protocol):
    """What the lifecycle needs of live rooms."""

    async def close_room_for_session(self, room_id: str, reason: str) -> None: ...

    async def participant_count(self, room_id: str) -> int: ...


class NoLiveRooms:
    """For tools that manage sessions without a running control plane (``telemed links``)."""

    async def close_room_for_session(self, room_id: str, reason: str) -> None:
        return None

    async def participant_count(self, room_id: str) -> int:
        return 0


class SessionLifecycle:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: SessionStore,
        access: SessionAccess,
        audit: AuditLog,
        licences: LicenceGate,
        consents: ConsentStore,
        rooms: LiveRooms,
        *,
        max_duration: dict[str, int] | None = None,
        inactivity_timeout: float = 600.0,
    ) -> None:
        self._pool = pool
        self._store = store
        self._access = access
        self._audit = audit
        self._licences = licences
        self._consents = consents
        self._rooms = rooms
        self.max_duration = {**MAX_DURATION, **(max_duration or {})}
        self.inactivity_timeout = inactivity_timeout

    async def start(self, claims: ApiClaims, session_id: str) -> None:
        actor = actor_of(claims)
        session = await self._access.readable(claims, session_id, "session.start")
        await self._access.require_physician_or_coordinator(claims, session, "session.start")
        if session.status != "scheduled":
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        await self._licences.require(
            actor, session.physician_id, session.specialty, "session.start", session_id
        )
        if not await self._consents.active(session.patient_id, "teleconsultation"):
            raise await self._audit.deny(
                actor,
                "session.start",
                ErrorCode.COMPLIANCE_VIOLATION,
                "the patient has not consented to teleconsultation",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": "no teleconsultation consent"},
            )
        async with self._pool.acquire() as conn, conn.transaction():
            if not await self._store.activate(session_id, conn):
                raise ApiError(ErrorCode.CONFLICT, "the session is no longer scheduled")
            await self._audit.record(
                actor,
                "session.start",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                connection=conn,
            )

    async def end(self, claims: ApiClaims, session_id: str, reason: str = "ended") -> None:
        session = await self._access.readable(claims, session_id, "session.end")
        await self._access.require_physician_or_coordinator(claims, session, "session.end")
        if session.status not in ("scheduled", "active"):
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        await self._finish(actor_of(claims), session_id, reason)

    async def _finish(self, actor: Actor, session_id: str, reason: str) -> bool:
        """End (active) or cancel (scheduled) a session; close its room.  Idempotent."""
        async with self._pool.acquire() as conn, conn.transaction():
            finished = await self._store.finish(session_id, reason, conn)
            if finished is None:
                return False
            await self._audit.record(
                actor,
                "session.end",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={
                    "reason": reason,
                    "status": finished.status,
                    "durationSeconds": int(finished.duration_seconds or 0),
                },
                connection=conn,
            )
        await self._rooms.close_room_for_session(finished.room_id, reason)
        return True

    async def end_for_consent_revocation(self, patient_id: str) -> list[str]:
        ended = []
        for session_id in await self._store.open_ids_of_patient(patient_id):
            if await self._finish(SYSTEM, session_id, "consent_revoked"):
                ended.append(session_id)
        return ended

    async def enforce_limits(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """End active sessions past their type's maximum or idle past the inactivity timeout."""
        now = now or datetime.now(UTC)
        ended: list[tuple[str, str]] = []
        for row in await self._store.active():
            reason = None
            limit = self.max_duration.get(row.session_type, MAX_DURATION["consultation"])
            if row.started_at and (now - row.started_at).total_seconds() > limit:
                reason = "max_duration"
            elif await self._rooms.participant_count(row.room_id) > 0:
                await self._store.touch(row.session_id)
            elif (
                row.last_activity_at
                and (now - row.last_activity_at).total_seconds() > self.inactivity_timeout
            ):
                reason = "inactivity"
            if reason and await self._finish(SYSTEM, row.session_id, reason):
                ended.append((row.session_id, reason))
                log.info("session_ended_by_policy", session_id=row.session_id, reason=reason)
        return ended

    async def run(self, interval: float) -> None:
        """Check the limits every ``interval`` seconds (every instance runs this; the
        database update decides which one ends a given session)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.enforce_limits()
            except Exception:
                log.exception("lifecycle_check_failed")
