"""Consultation sessions: creation, reading and duration statistics.

Create: admin or coordinator; a physician only for themself; the physician's
licence is checked.  Read: see session_access.  Starting, ending and the
lifecycle limits are in lifecycle.py; room tokens and the join gate in
room_tokens.py and join_gate.py.
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

import asyncpg

from controlplane.auth import ApiClaims
from controlplane.clinical.audit import AuditLog
from controlplane.clinical.consents import ConsentStore
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.licences import LicenceGate
from controlplane.clinical.session_access import SessionAccess, actor_of
from controlplane.clinical.session_store import NewSession, SessionStore
from schemas.errors import ApiError, ErrorCode


class SessionService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: SessionStore,
        access: SessionAccess,
        audit: AuditLog,
        licences: LicenceGate,
        consents: ConsentStore,
        cipher: FieldCipher,
    ) -> None:
        self._pool = pool
        self._store = store
        self._access = access
        self._audit = audit
        self._licences = licences
        self._consents = consents
        self._cipher = cipher

    async def describe(self, session_id: str) -> dict[str, Any]:
        described = await self._store.describe(session_id)
        if described is None:
            raise ApiError(ErrorCode.NOT_FOUND, "session not found")
        return described

    async def create(self, claims: ApiClaims, body: dict[str, Any]) -> dict[str, Any]:
        actor = actor_of(claims)
        if (
            claims.role == "patient"
            or (claims.role == "physician" and body["physicianId"] != claims.subject)
            or (claims.clinic is not None and body["clinicId"] != claims.clinic)
        ):
            raise await self._access.forbid(
                claims, "session.create", "you may not create this session"
            )
        await self._licences.require(
            actor, body["physicianId"], body["specialty"], "session.create", None
        )
        session_id = uuid.uuid4()
        notes = body.get("notes")
        consent = await self._consents.active(body["patientId"], "teleconsultation")
        recording = body["recordingEnabled"] and await self._consents.active(
            body["patientId"], "recording"
        )
        session = NewSession(
            id=session_id,
            room_id=f"room-{session_id.hex[:16]}",
            patient_id=body["patientId"],
            physician_id=body["physicianId"],
            session_type=body["sessionType"],
            specialty=body["specialty"],
            scheduled_for=body["scheduledFor"],
            estimated_duration_minutes=body["estimatedDuration"],
            clinic_id=body["clinicId"],
            notes_enc=(
                self._cipher.encrypt(notes, f"session-notes:{session_id}") if notes else None
            ),
            recording_enabled=recording,
            consent_obtained=consent,
            created_by=claims.subject,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await self._store.insert(
                session,
                [(session.patient_id, "patient"), (session.physician_id, "physician")],
                conn,
            )
            await self._audit.record(
                actor,
                "session.create",
                resource_type="session",
                resource_id=str(session_id),
                session_id=str(session_id),
                classification="sensitive",
                details={"sessionType": session.session_type},
                connection=conn,
            )
        return await self.describe(str(session_id))

    async def get(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        await self._access.readable(claims, session_id, "session.read")
        await self._audit.record(
            actor_of(claims),
            "session.read",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
            classification="sensitive",
        )
        return await self.describe(session_id)

    async def duration_stats(self, claims: ApiClaims, session_type: str | None) -> dict[str, Any]:
        if claims.role not in ("coordinator", "admin"):
            raise await self._access.forbid(
                claims, "metrics.duration", "coordinators and admins only"
            )
        by_type: dict[str, list[float]] = {}
        for kind, seconds in await self._store.durations(session_type, claims.clinic):
            by_type.setdefault(kind, []).append(seconds)
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
