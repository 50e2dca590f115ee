"""Consultation sessions: creation, start, end, access rules, room tokens, the
join gate for signaling, lifecycle limits and duration statistics.

Access rules:
- create: admin or coordinator; a physician only for themself.
- start / end: the session's physician or a coordinator.
- read: the session's participants, coordinators and admins.
- room token: a participant of an *active* session, for that session only.
Whoever may not read a session gets NOT_FOUND (existence does not leak); every
refusal is audited.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from controlplane.audit import SYSTEM, Actor, AuditLog
from controlplane.auth import ApiClaims, RoomClaims, TokenService
from controlplane.consents import ConsentStore
from controlplane.field_crypto import FieldCipher
from controlplane.licences import LicenceRegistry, licence_problem
from controlplane.media_profiles import CALL_TYPES
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

# The spec's session types: every media profile's call type except "specialist",
# which is a capture profile rather than a kind of session.
SESSION_TYPES = tuple(t for t in CALL_TYPES if t != "specialist")
# Longest a session of each type may run (seconds) before it is ended.
MAX_DURATION = {
    "consultation": 60 * 60,
    "follow_up": 30 * 60,
    "emergency": 2 * 60 * 60,
    "mental_health": 90 * 60,
    "group_therapy": 2 * 60 * 60,
    "second_opinion": 60 * 60,
}

RoomCloser = Callable[[str, str], Awaitable[None]]
PeerCounter = Callable[[str], Awaitable[int]]


def actor_of(claims: ApiClaims) -> Actor:
    return Actor(claims.subject, claims.role)


@dataclass(frozen=True)
class SessionRow:
    id: str
    room_id: str
    patient_id: str
    physician_id: str
    session_type: str
    status: str
    participants: dict[str, str]  # participant id -> role


class SessionService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        audit: AuditLog,
        registry: LicenceRegistry,
        consents: ConsentStore,
        cipher: FieldCipher,
        tokens: TokenService,
        *,
        room_token_ttl: int,
        max_duration: dict[str, int] | None = None,
        inactivity_timeout: float = 600.0,
    ) -> None:
        self._pool = pool
        self.audit = audit
        self._registry = registry
        self._consents = consents
        self._cipher = cipher
        self._tokens = tokens
        self._room_token_ttl = room_token_ttl
        self.max_duration = {**MAX_DURATION, **(max_duration or {})}
        self.inactivity_timeout = inactivity_timeout
        self.close_room: RoomCloser | None = None
        self.count_peers: PeerCounter | None = None

    # ---- helpers ---------------------------------------------------------------

    async def _load(self, session_id: str) -> SessionRow | None:
        try:
            uuid.UUID(session_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(
            "SELECT * FROM sessions WHERE id = $1", uuid.UUID(session_id)
        )
        if row is None:
            return None
        parts = await self._pool.fetch(
            "SELECT participant_id, role FROM session_participants WHERE session_id = $1", row["id"]
        )
        return SessionRow(
            id=str(row["id"]),
            room_id=row["room_id"],
            patient_id=row["patient_id"],
            physician_id=row["physician_id"],
            session_type=row["session_type"],
            status=row["status"],
            participants={p["participant_id"]: p["role"] for p in parts},
        )

    async def _deny(
        self,
        actor: Actor,
        action: str,
        code: ErrorCode,
        message: str,
        session_id: str | None = None,
        reason: str = "",
    ) -> ApiError:
        await self.audit.record(
            actor,
            action,
            outcome="denied",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id if session_id and _is_uuid(session_id) else None,
            details={"code": str(code), "reason": reason},
        )
        return ApiError(code, message)

    @staticmethod
    def _can_read(claims: ApiClaims, session: SessionRow) -> bool:
        return claims.role in ("coordinator", "admin") or claims.subject in session.participants

    async def _readable(self, claims: ApiClaims, session_id: str, action: str) -> SessionRow:
        session = await self._load(session_id)
        if session is None or not self._can_read(claims, session):
            raise await self._deny(
                actor_of(claims),
                action,
                ErrorCode.NOT_FOUND,
                "session not found",
                session_id,
                "missing" if session is None else "not a participant",
            )
        return session

    async def readable_for_staff(self, claims: ApiClaims, session_id: str) -> SessionRow:
        """Quality detail: coordinators, admins and the session's physician."""
        session = await self._load(session_id)
        allowed = session is not None and (
            claims.role in ("coordinator", "admin") or claims.subject == session.physician_id
        )
        if not allowed:
            raise await self._deny(
                actor_of(claims),
                "metrics.quality",
                ErrorCode.NOT_FOUND,
                "session not found",
                session_id,
                "no access",
            )
        assert session is not None
        return session

    async def _require_physician_or_coordinator(
        self, claims: ApiClaims, session: SessionRow, action: str
    ) -> None:
        if claims.role == "coordinator" or claims.subject == session.physician_id:
            return
        verb = action.split(".")[1]
        raise await self._deny(
            actor_of(claims),
            action,
            ErrorCode.FORBIDDEN,
            f"only the session's physician or a coordinator may {verb} it",
            session.id,
            claims.role,
        )

    async def _check_licence(
        self, actor: Actor, physician_id: str, specialty: str, action: str, session_id: str | None
    ) -> None:
        clinician = await self._pool.fetchrow(
            "SELECT crm, uf FROM clinicians WHERE id = $1", physician_id
        )
        problem = (
            "physician is not registered"
            if clinician is None
            else licence_problem(
                await self._registry.lookup(clinician["crm"], clinician["uf"]), specialty
            )
        )
        if problem:
            await self.audit.record(
                actor,
                "licence.check",
                outcome="denied",
                resource_type="clinician",
                resource_id=physician_id,
                session_id=session_id,
                details={"reason": problem, "during": action},
            )
            raise ApiError(
                ErrorCode.PHYSICIAN_NOT_AUTHORIZED,
                f"the physician may not hold this teleconsultation: {problem}",
            )

    async def describe(self, session_id: str) -> dict[str, Any]:
        row = await self._pool.fetchrow(
            "SELECT * FROM sessions WHERE id = $1", uuid.UUID(session_id)
        )
        assert row is not None
        return {
            "sessionId": str(row["id"]),
            "roomId": row["room_id"],
            "patientId": row["patient_id"],
            "physicianId": row["physician_id"],
            "sessionType": row["session_type"],
            "specialty": row["specialty"],
            "clinicId": row["clinic_id"],
            "scheduledFor": row["scheduled_for"].isoformat(),
            "estimatedDuration": row["estimated_duration_minutes"],
            "status": row["status"],
            "startedAt": _iso(row["started_at"]),
            "endedAt": _iso(row["ended_at"]),
            "endReason": row["end_reason"],
            "durationSeconds": row["duration_seconds"],
            "recordingEnabled": row["recording_enabled"],
            "compliance": {
                "licenseVerified": row["licence_verified"],
                "consentObtained": row["consent_obtained"],
                "telemedicineCompliant": row["licence_verified"] and row["consent_obtained"],
            },
            "classification": row["classification"],
        }

    # ---- lifecycle ----------------------------------------------------------------

    async def create(self, claims: ApiClaims, body: dict[str, Any]) -> dict[str, Any]:
        actor = actor_of(claims)
        if claims.role == "patient" or (
            claims.role == "physician" and body["physicianId"] != claims.subject
        ):
            raise await self._deny(
                actor,
                "session.create",
                ErrorCode.FORBIDDEN,
                "you may not create this session",
                reason=claims.role,
            )
        await self._check_licence(
            actor, body["physicianId"], body["specialty"], "session.create", None
        )
        session_id = uuid.uuid4()
        room_id = f"room-{session_id.hex[:16]}"
        notes = body.get("notes")
        consent = await self._consents.active(body["patientId"], "teleconsultation")
        recording = body["recordingEnabled"] and await self._consents.active(
            body["patientId"], "recording"
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO sessions (id, room_id, patient_id, physician_id, session_type,
                       specialty, scheduled_for, estimated_duration_minutes, clinic_id, notes_enc,
                       recording_enabled, licence_verified, consent_obtained, created_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, $12, $13)""",
                session_id,
                room_id,
                body["patientId"],
                body["physicianId"],
                body["sessionType"],
                body["specialty"],
                body["scheduledFor"],
                body["estimatedDuration"],
                body["clinicId"],
                self._cipher.encrypt(notes, f"session-notes:{session_id}") if notes else None,
                recording,
                consent,
                claims.subject,
            )
            await conn.executemany(
                "INSERT INTO session_participants (session_id, participant_id, role) "
                "VALUES ($1, $2, $3)",
                [
                    (session_id, body["patientId"], "patient"),
                    (session_id, body["physicianId"], "physician"),
                ],
            )
            await self.audit.record(
                actor,
                "session.create",
                resource_type="session",
                resource_id=str(session_id),
                session_id=str(session_id),
                classification="sensitive",
                details={"sessionType": body["sessionType"]},
                connection=conn,
            )
        return await self.describe(str(session_id))

    async def start(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        actor = actor_of(claims)
        session = await self._readable(claims, session_id, "session.start")
        await self._require_physician_or_coordinator(claims, session, "session.start")
        if session.status != "scheduled":
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        row = await self._pool.fetchrow(
            "SELECT specialty FROM sessions WHERE id = $1", uuid.UUID(session_id)
        )
        await self._check_licence(
            actor, session.physician_id, row["specialty"], "session.start", session_id
        )
        if not await self._consents.active(session.patient_id, "teleconsultation"):
            raise await self._deny(
                actor,
                "session.start",
                ErrorCode.COMPLIANCE_VIOLATION,
                "the patient has not consented to teleconsultation",
                session_id,
                "no teleconsultation consent",
            )
        async with self._pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                """UPDATE sessions SET status = 'active', started_at = now(),
                       last_activity_at = now(), consent_obtained = true, licence_verified = true
                   WHERE id = $1 AND status = 'scheduled' RETURNING id""",
                uuid.UUID(session_id),
            )
            if updated is None:
                raise ApiError(ErrorCode.CONFLICT, "the session is no longer scheduled")
            await self.audit.record(
                actor,
                "session.start",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                connection=conn,
            )
        return await self.describe(session_id)

    async def end(
        self, claims: ApiClaims, session_id: str, reason: str = "ended"
    ) -> dict[str, Any]:
        actor = actor_of(claims)
        session = await self._readable(claims, session_id, "session.end")
        await self._require_physician_or_coordinator(claims, session, "session.end")
        if session.status not in ("scheduled", "active"):
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        await self._finish(actor, session_id, reason)
        return await self.describe(session_id)

    async def _finish(self, actor: Actor, session_id: str, reason: str) -> bool:
        """End (active) or cancel (scheduled) a session; close its room.  Idempotent."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE sessions SET
                       status = CASE WHEN status = 'active' THEN 'ended' ELSE 'cancelled' END,
                       ended_at = now(), end_reason = $2,
                       duration_seconds = CASE WHEN started_at IS NULL THEN NULL
                           ELSE extract(epoch FROM now() - started_at) END
                   WHERE id = $1 AND status IN ('scheduled', 'active')
                   RETURNING room_id, status, duration_seconds""",
                uuid.UUID(session_id),
                reason,
            )
            if row is None:
                return False
            await self.audit.record(
                actor,
                "session.end",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={
                    "reason": reason,
                    "status": row["status"],
                    "durationSeconds": int(row["duration_seconds"] or 0),
                },
                connection=conn,
            )
        if self.close_room is not None:
            await self.close_room(row["room_id"], reason)
        return True

    async def get(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        await self._readable(claims, session_id, "session.read")
        await self.audit.record(
            actor_of(claims),
            "session.read",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
            classification="sensitive",
        )
        return await self.describe(session_id)

    # ---- rooms -------------------------------------------------------------------

    async def room_token(
        self, claims: ApiClaims, session_id: str, display_name: str = ""
    ) -> dict[str, Any]:
        actor = actor_of(claims)
        session = await self._load(session_id)
        if session is None or claims.subject not in session.participants:
            raise await self._deny(
                actor,
                "room_token.issue",
                ErrorCode.NOT_FOUND,
                "session not found",
                session_id,
                "not a participant",
            )
        if session.status != "active":
            raise await self._deny(
                actor,
                "room_token.issue",
                ErrorCode.CONFLICT,
                f"the session is {session.status}, not active",
                session_id,
                session.status,
            )
        role = session.participants[claims.subject]
        token = self._tokens.mint(
            participant_id=claims.subject,
            role=role,
            consultation_id=session.room_id,
            call_type=session.session_type,
            display_name=display_name,
            ttl=self._room_token_ttl,
            mfa=claims.mfa,
        )
        await self.audit.record(
            actor,
            "room_token.issue",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
        )
        return {"roomId": session.room_id, "token": token, "expiresIn": self._room_token_ttl}

    async def authorize_join(self, claims: RoomClaims) -> str:
        """Signaling join gate: the token's session is active and names this participant.

        Returns the session's type (the room's media profile).
        """
        actor = Actor(claims.participant_id, claims.role)
        row = await self._pool.fetchrow(
            """SELECT s.id, s.status, s.session_type, p.role FROM sessions s
               LEFT JOIN session_participants p
                 ON p.session_id = s.id AND p.participant_id = $2
               WHERE s.room_id = $1""",
            claims.consultation_id,
            claims.participant_id,
        )
        session_id = str(row["id"]) if row else None
        if row is None or row["role"] is None or row["role"] != claims.role:
            await self.audit.record(
                actor,
                "room.join",
                outcome="denied",
                resource_type="room",
                resource_id=claims.consultation_id,
                session_id=session_id,
                details={"reason": "not a participant", "jti": claims.token_id},
            )
            raise ApiError(
                ErrorCode.FORBIDDEN, "this token does not grant access to that consultation"
            )
        if row["status"] != "active":
            await self.audit.record(
                actor,
                "room.join",
                outcome="denied",
                resource_type="room",
                resource_id=claims.consultation_id,
                session_id=session_id,
                details={"reason": f"session {row['status']}"},
            )
            raise ApiError(ErrorCode.SESSION_EXPIRED, f"the consultation is {row['status']}")
        await self.audit.record(
            actor,
            "room.join",
            resource_type="room",
            resource_id=claims.consultation_id,
            session_id=session_id,
            details={"jti": claims.token_id},
        )
        await self._pool.execute(
            "UPDATE sessions SET last_activity_at = now() WHERE id = $1", row["id"]
        )
        session_type: str = row["session_type"]
        return session_type

    async def record_leave(self, room_id: str, participant_id: str, role: str, reason: str) -> None:
        session_id = await self._pool.fetchval(
            "SELECT id FROM sessions WHERE room_id = $1", room_id
        )
        await self.audit.record(
            Actor(participant_id, role),
            "room.leave",
            resource_type="room",
            resource_id=room_id,
            session_id=str(session_id) if session_id else None,
            details={"reason": reason},
        )

    async def record_refusal(
        self, room_id: str, participant_id: str, role: str, event: str, code: str
    ) -> None:
        session_id = await self._pool.fetchval(
            "SELECT id FROM sessions WHERE room_id = $1", room_id
        )
        await self.audit.record(
            Actor(participant_id, role),
            f"signaling.{event}",
            outcome="denied",
            resource_type="room",
            resource_id=room_id,
            session_id=str(session_id) if session_id else None,
            details={"code": code},
        )

    async def end_for_consent_revocation(self, patient_id: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT id FROM sessions WHERE patient_id = $1 AND status IN ('active', 'scheduled')",
            patient_id,
        )
        ended = []
        for row in rows:
            if await self._finish(SYSTEM, str(row["id"]), "consent_revoked"):
                ended.append(str(row["id"]))
        return ended

    async def enforce_limits(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """End active sessions past their type's maximum or idle past the inactivity timeout."""
        now = now or datetime.now(UTC)
        ended: list[tuple[str, str]] = []
        for row in await self._pool.fetch(
            "SELECT id, room_id, session_type, started_at, last_activity_at FROM sessions "
            "WHERE status = 'active'"
        ):
            reason = None
            limit = self.max_duration.get(row["session_type"], MAX_DURATION["consultation"])
            if row["started_at"] and (now - row["started_at"]).total_seconds() > limit:
                reason = "max_duration"
            else:
                peers = await self.count_peers(row["room_id"]) if self.count_peers else 0
                if peers > 0:
                    await self._pool.execute(
                        "UPDATE sessions SET last_activity_at = now() WHERE id = $1", row["id"]
                    )
                elif (
                    row["last_activity_at"]
                    and (now - row["last_activity_at"]).total_seconds() > self.inactivity_timeout
                ):
                    reason = "inactivity"
            if reason and await self._finish(SYSTEM, str(row["id"]), reason):
                ended.append((str(row["id"]), reason))
                log.info("session_ended_by_policy", session_id=str(row["id"]), reason=reason)
        return ended

    async def duration_stats(self, claims: ApiClaims, session_type: str | None) -> dict[str, Any]:
        if claims.role not in ("coordinator", "admin"):
            raise await self._deny(
                actor_of(claims),
                "metrics.duration",
                ErrorCode.FORBIDDEN,
                "coordinators and admins only",
                reason=claims.role,
            )
        rows = await self._pool.fetch(
            """SELECT session_type, duration_seconds FROM sessions
               WHERE status = 'ended' AND duration_seconds IS NOT NULL
                 AND ($1::text IS NULL OR session_type = $1)""",
            session_type,
        )
        by_type: dict[str, list[float]] = {}
        for row in rows:
            by_type.setdefault(row["session_type"], []).append(float(row["duration_seconds"]))
        everything = [d for values in by_type.values() for d in values]
        return {
            "unit": "seconds",
            "overall": _summary(everything),
            "bySessionType": {k: _summary(v) for k, v in sorted(by_type.items())},
        }


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 3),
        "p50": round(statistics.median(values), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
