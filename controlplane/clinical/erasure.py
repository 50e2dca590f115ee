"""The right to erasure (LGPD art. 18, VI), within the medical-record duty.

Erased at once:
- live state: the patient's display name in live rooms and waiting rooms, their
  client stats and quality history (Redis);
- recordings with no retention duty (their session type's recording period is
  shorter than the medical record's, i.e. the clinic does not file recordings in
  the record): crypto-shredded (the wrapped key is cleared, the ciphertext
  deleted), so no copy of the file can be decrypted again;
- call-quality alerts about the patient.
Kept, and said so with the date until which: clinical records and session notes
(the medical record: 20 years), recordings filed in the record, consent records
(proof of lawful processing) and the audit trail.  The platform stores no contact
data and consents carry no free text, so there is nothing more to erase.

The request is stored (who, when, counts per class) and audited with counts only;
a second request erases what arrived since and is otherwise harmless.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.recording_rows import shred_finished
from controlplane.clinical.retention_policy import DATA_CLASSES, TWENTY_YEARS


class LiveState(Protocol):
    async def erase(self, room_ids: list[str], participant_id: str) -> int: ...


class PatientErasure:
    def __init__(
        self,
        pool: asyncpg.Pool,
        audit: AuditLog,
        live: LiveState,
        periods: dict[str, int],
        recording_periods: dict[str, int],
    ) -> None:
        self._pool = pool
        self._audit = audit
        self._live = live
        self._periods = periods
        self._recording_periods = recording_periods

    def _recording_kept(self, session_type: str) -> bool:
        """Filed in the medical record: kept at least as long as the record."""
        return self._recording_periods[session_type] >= min(
            self._periods["clinical_record"], TWENTY_YEARS
        )

    async def erase(self, actor: Actor, patient_id: str, clinic: str | None) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        async with self._pool.acquire() as conn:
            sessions = await conn.fetch(
                """SELECT id, room_id, session_type FROM sessions WHERE patient_id = $1
                     AND ($2::text IS NULL OR clinic_id = $2)""",
                patient_id,
                clinic,
            )
            previous = await conn.fetchval(
                "SELECT count(*) FROM erasure_requests WHERE patient_id = $1", patient_id
            )
        session_ids = [s["id"] for s in sessions]
        live = await self._live.erase([s["room_id"] for s in sessions], patient_id)
        shredded = await self._shred_recordings(actor, session_ids)
        async with self._pool.acquire() as conn, conn.transaction():
            alerts = await conn.fetch(
                "DELETE FROM alerts WHERE participant_id = $1 AND session_id = ANY($2::uuid[]) "
                "RETURNING id",
                patient_id,
                session_ids,
            )
            kept = await self._kept(conn, patient_id, session_ids)
            erased = {"liveState": live, "recordings": len(shredded), "alerts": len(alerts)}
            await conn.execute(
                """INSERT INTO erasure_requests (id, patient_id, requested_by, completed_at,
                       erased, kept) VALUES ($1, $2, $3, now(), $4::jsonb, $5::jsonb)""",
                uuid.UUID(request_id),
                patient_id,
                str(actor.id),
                json.dumps(erased),
                json.dumps(kept),
            )
            await self._audit.record(
                actor,
                "patient.erasure",
                resource_type="patient",
                resource_id=patient_id,
                classification="personal",
                details={
                    "request": request_id,
                    "clinic": clinic,
                    "liveState": live,
                    "recordings": len(shredded),
                    "alerts": len(alerts),
                    "repeat": previous > 0,
                },
                connection=conn,
            )
        return {
            "requestId": request_id,
            "patientId": patient_id,
            "repeat": previous > 0,
            "erased": {**erased, "recordingIds": shredded},
            "kept": kept,
        }

    async def _shred_recordings(self, actor: Actor, session_ids: list[Any]) -> list[str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT r.id, r.session_id, s.session_type FROM recordings r
                   JOIN sessions s ON s.id = r.session_id
                   WHERE r.session_id = ANY($1::uuid[]) AND r.status IN ('completed', 'failed')""",
                session_ids,
            )
        shredded = []
        for row in rows:
            if self._recording_kept(row["session_type"]):
                continue
            async with self._pool.acquire() as conn:
                if not await shred_finished(conn, row["id"], "erasure"):
                    continue  # shredded meanwhile (a concurrent request)
                await self._audit.record(
                    actor,
                    "recording.erasure_shred",
                    resource_type="recording",
                    resource_id=str(row["id"]),
                    session_id=str(row["session_id"]),
                    connection=conn,
                )
            shredded.append(str(row["id"]))
        return shredded

    async def _kept(
        self, conn: asyncpg.Connection, patient_id: str, session_ids: list[Any]
    ) -> list[dict[str, Any]]:
        """What a legal duty keeps: class, count, until when, why."""
        now = datetime.now(UTC)

        def until(newest: datetime | None, seconds: int) -> str | None:
            return (newest + timedelta(seconds=seconds)).isoformat() if newest else None

        kept = []
        record_period = self._periods["clinical_record"]
        records = await conn.fetchrow(
            """SELECT count(*) AS n, max(created_at) AS newest FROM clinical_records
               WHERE session_id = ANY($1::uuid[])""",
            session_ids,
        )
        notes = await conn.fetchrow(
            """SELECT count(*) AS n, max(coalesce(ended_at, created_at)) AS newest
               FROM sessions WHERE id = ANY($1::uuid[])""",
            session_ids,
        )
        newest = max((d for d in (records["newest"], notes["newest"]) if d), default=None)
        kept.append(
            {
                "dataClass": "clinical_record",
                "what": "clinical records (notes, prescriptions, follow-ups) and sessions",
                "count": int(records["n"]) + int(notes["n"]),
                "until": until(newest, record_period),
                "basis": DATA_CLASSES["clinical_record"].basis,
            }
        )
        filed = await conn.fetch(
            """SELECT s.session_type, r.started_at FROM recordings r
               JOIN sessions s ON s.id = r.session_id
               WHERE r.session_id = ANY($1::uuid[]) AND r.status IN ('completed', 'failed')""",
            session_ids,
        )
        filed = [r for r in filed if self._recording_kept(r["session_type"])]
        if filed:
            ends = [
                r["started_at"] + timedelta(seconds=self._recording_periods[r["session_type"]])
                for r in filed
            ]
            kept.append(
                {
                    "dataClass": "recording",
                    "what": "recordings filed in the medical record",
                    "count": len(filed),
                    "until": max(ends).isoformat(),
                    "basis": DATA_CLASSES["recording"].basis,
                }
            )
        consents = await conn.fetchrow(
            "SELECT count(*) AS n, max(coalesce(revoked_at, granted_at)) AS newest "
            "FROM consents WHERE patient_id = $1",
            patient_id,
        )
        kept.append(
            {
                "dataClass": "consent",
                "what": "consent records (purpose, version, dates)",
                "count": int(consents["n"]),
                "until": until(consents["newest"] or now, self._periods["consent"]),
                "basis": DATA_CLASSES["consent"].basis,
            }
        )
        kept.append(
            {
                "dataClass": "audit",
                "what": "audit trail entries (identifiers and actions, no health data)",
                "until": until(now, self._periods["audit"]),
                "basis": DATA_CLASSES["audit"].basis,
            }
        )
        return kept
