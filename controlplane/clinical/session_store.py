"""Sessions and their participants in PostgreSQL: every query on ``sessions`` and
``session_participants`` lives here; the services above hold the rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schemas.ids import is_uuid


@dataclass(frozen=True)
class SessionRow:
    id: str
    room_id: str
    patient_id: str
    physician_id: str
    session_type: str
    specialty: str
    status: str
    participants: dict[str, str]  # participant id -> role
    clinic_id: str = ""


@dataclass(frozen=True)
class NewSession:
    id: uuid.UUID
    room_id: str
    patient_id: str
    physician_id: str
    session_type: str
    specialty: str
    scheduled_for: datetime
    estimated_duration_minutes: int
    clinic_id: str
    notes_enc: bytes | None
    recording_enabled: bool
    consent_obtained: bool
    created_by: str


@dataclass(frozen=True)
class JoinRow:
    """What the join gate needs: the room's session and the participant's role in it."""

    session_id: str
    status: str
    session_type: str
    role: str | None
    elapsed_seconds: float  # since the session started


@dataclass(frozen=True)
class ActiveRow:
    session_id: str
    room_id: str
    session_type: str
    started_at: datetime | None
    last_activity_at: datetime | None


@dataclass(frozen=True)
class FinishedRow:
    room_id: str
    status: str
    duration_seconds: float | None


class SessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _row(self, session_id: str) -> Any:
        """The session's row; None for an unknown or malformed id."""
        if not is_uuid(session_id):
            return None
        return await self._pool.fetchrow(
            "SELECT * FROM sessions WHERE id = $1", uuid.UUID(session_id)
        )

    async def load(self, session_id: str) -> SessionRow | None:
        """The session and its participants; None for an unknown or malformed id."""
        row = await self._row(session_id)
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
            specialty=row["specialty"],
            status=row["status"],
            participants={p["participant_id"]: p["role"] for p in parts},
            clinic_id=row["clinic_id"],
        )

    async def describe(self, session_id: str) -> dict[str, Any] | None:
        """The session as the API shows it (SessionSchema)."""
        row = await self._row(session_id)
        if row is None:
            return None
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

    async def clinic_for_room(self, room_id: str) -> str | None:
        clinic: str | None = await self._pool.fetchval(
            "SELECT clinic_id FROM sessions WHERE room_id = $1", room_id
        )
        return clinic

    async def id_for_room(self, room_id: str) -> str | None:
        """The id of the session that owns a room (room ids are unique per session)."""
        session_id = await self._pool.fetchval(
            "SELECT id FROM sessions WHERE room_id = $1", room_id
        )
        return str(session_id) if session_id is not None else None

    async def insert(
        self, session: NewSession, participants: list[tuple[str, str]], conn: asyncpg.Connection
    ) -> None:
        """Insert a session and its participants (``participants``: id, role) in ``conn``."""
        await conn.execute(
            """INSERT INTO sessions (id, room_id, patient_id, physician_id, session_type,
                   specialty, scheduled_for, estimated_duration_minutes, clinic_id, notes_enc,
                   recording_enabled, licence_verified, consent_obtained, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, $12, $13)""",
            session.id,
            session.room_id,
            session.patient_id,
            session.physician_id,
            session.session_type,
            session.specialty,
            session.scheduled_for,
            session.estimated_duration_minutes,
            session.clinic_id,
            session.notes_enc,
            session.recording_enabled,
            session.consent_obtained,
            session.created_by,
        )
        await conn.executemany(
            "INSERT INTO session_participants (session_id, participant_id, role) "
            "VALUES ($1, $2, $3)",
            [(session.id, participant, role) for participant, role in participants],
        )

    async def add_participant(
        self, session_id: str, participant_id: str, role: str, added_by: str
    ) -> dict[str, Any] | None:
        """The participant as listed; None when it is in the session already."""
        row = await self._pool.fetchrow(
            """INSERT INTO session_participants (session_id, participant_id, role, added_by)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
               RETURNING participant_id, role, added_by, added_at""",
            uuid.UUID(session_id),
            participant_id,
            role,
            added_by,
        )
        return _listed(row) if row is not None else None

    async def remove_participant(self, session_id: str, participant_id: str) -> bool:
        removed = await self._pool.fetchval(
            """DELETE FROM session_participants WHERE session_id = $1 AND participant_id = $2
               RETURNING participant_id""",
            uuid.UUID(session_id),
            participant_id,
        )
        return removed is not None

    async def participant_list(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT participant_id, role, added_by, added_at FROM session_participants
               WHERE session_id = $1 ORDER BY added_at, participant_id""",
            uuid.UUID(session_id),
        )
        return [_listed(r) for r in rows]

    async def activate(self, session_id: str, conn: asyncpg.Connection) -> bool:
        """scheduled -> active (licence and consent were just checked); False if not scheduled."""
        updated = await conn.fetchval(
            """UPDATE sessions SET status = 'active', started_at = now(),
                   last_activity_at = now(), consent_obtained = true, licence_verified = true
               WHERE id = $1 AND status = 'scheduled' RETURNING id""",
            uuid.UUID(session_id),
        )
        return updated is not None

    async def finish(
        self, session_id: str, reason: str, conn: asyncpg.Connection
    ) -> FinishedRow | None:
        """active -> ended, scheduled -> cancelled; None when it was neither."""
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
            return None
        duration = row["duration_seconds"]
        return FinishedRow(
            row["room_id"], row["status"], float(duration) if duration is not None else None
        )

    async def for_join(self, room_id: str, participant_id: str) -> JoinRow | None:
        row = await self._pool.fetchrow(
            """SELECT s.id, s.status, s.session_type, p.role,
                   extract(epoch FROM now() - coalesce(s.started_at, now())) AS elapsed
               FROM sessions s
               LEFT JOIN session_participants p
                 ON p.session_id = s.id AND p.participant_id = $2
               WHERE s.room_id = $1""",
            room_id,
            participant_id,
        )
        if row is None:
            return None
        return JoinRow(
            str(row["id"]), row["status"], row["session_type"], row["role"], float(row["elapsed"])
        )

    async def touch(self, session_id: str) -> None:
        """Someone is in the room: the inactivity clock starts again."""
        await self._pool.execute(
            "UPDATE sessions SET last_activity_at = now() WHERE id = $1", uuid.UUID(session_id)
        )

    async def open_ids_of_patient(self, patient_id: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT id FROM sessions WHERE patient_id = $1 AND status IN ('active', 'scheduled')",
            patient_id,
        )
        return [str(row["id"]) for row in rows]

    async def active(self) -> list[ActiveRow]:
        rows = await self._pool.fetch(
            "SELECT id, room_id, session_type, started_at, last_activity_at FROM sessions "
            "WHERE status = 'active'"
        )
        return [
            ActiveRow(
                str(r["id"]),
                r["room_id"],
                r["session_type"],
                r["started_at"],
                r["last_activity_at"],
            )
            for r in rows
        ]

    async def durations(
        self, session_type: str | None, clinic_id: str | None
    ) -> list[tuple[str, float]]:
        """(type, seconds) of every ended session, optionally of one type and clinic."""
        rows = await self._pool.fetch(
            """SELECT session_type, duration_seconds FROM sessions
               WHERE status = 'ended' AND duration_seconds IS NOT NULL
                 AND ($1::text IS NULL OR session_type = $1)
                 AND ($2::text IS NULL OR clinic_id = $2)""",
            session_type,
            clinic_id,
        )
        return [(r["session_type"], float(r["duration_seconds"])) for r in rows]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _listed(row: Any) -> dict[str, Any]:
    return {
        "participantId": row["participant_id"],
        "role": row["role"],
        "addedBy": row["added_by"],
        "addedAt": row["added_at"].isoformat(),
    }
