"""Data portability (LGPD art. 18, V): a patient's data as a FHIR R4 ``Bundle``
(type ``collection``): the Patient, an Encounter per session, a Consent per consent
record (granted, and revoked when it was), a DocumentReference per note,
prescription and follow-up (decrypted text attached), a Media per completed
recording (a download link, not the video), and an AuditEvent per audit entry
about the patient or their sessions.

Who: the patient themself (everything), or an admin of a clinic the patient has
sessions with (that clinic's sessions and what hangs off them; the consents,
which are the patient's own and not per clinic).  Every export is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fhir.resources.R4B.resource import Resource

from controlplane.auth import ApiClaims
from controlplane.clinical import fhir_resources as fhir
from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.field_crypto import DecryptionError, FieldCipher
from schemas.errors import ErrorCode


class PatientExport:
    def __init__(
        self, pool: asyncpg.Pool, audit: AuditLog, cipher: FieldCipher, public_url: str
    ) -> None:
        self._pool = pool
        self._audit = audit
        self._cipher = cipher
        self._public_url = public_url.rstrip("/")

    async def scope(self, claims: ApiClaims, patient_id: str, action: str) -> str | None:
        """The clinic the caller's view is limited to (None: all); refuses (audited)
        whoever is neither the patient nor an admin of one of their clinics."""
        if claims.role == "patient" and claims.subject == patient_id and claims.room_id is None:
            return None
        if claims.role == "admin" and claims.clinic is not None:
            known = await self._pool.fetchval(
                "SELECT 1 FROM sessions WHERE patient_id = $1 AND clinic_id = $2 LIMIT 1",
                patient_id,
                claims.clinic,
            )
            if known:
                return claims.clinic
        raise await self._audit.deny(
            Actor(claims.subject, claims.role),
            action,
            ErrorCode.NOT_FOUND,
            "patient not found",
            resource_type="patient",
            resource_id=patient_id,
        )

    async def bundle(self, actor: Actor, patient_id: str, clinic: str | None) -> dict[str, Any]:
        """The Bundle as JSON (validated by the FHIR models as it is built)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await _rows(conn, patient_id, clinic)
        resources: list[Resource] = [fhir.patient(patient_id)]
        by_session: dict[str, list[dict[str, Any]]] = {}
        for p in rows["participants"]:
            by_session.setdefault(str(p["session_id"]), []).append(p)
        for session in rows["sessions"]:
            resources.append(fhir.encounter(session, by_session.get(str(session["id"]), [])))
        resources += [fhir.consent(c) for c in rows["consents"]]
        unreadable = 0
        for session in rows["sessions"]:
            if session["notes_enc"] is None:
                continue
            try:
                text = self._cipher.decrypt(
                    bytes(session["notes_enc"]), f"session-notes:{session['id']}"
                )
            except DecryptionError:
                unreadable += 1
                continue
            note = {
                "id": f"{session['id']}-notes",
                "session_id": session["id"],
                "kind": "note",
                "author_id": session["created_by"],
                "created_at": session["created_at"],
            }
            resources.append(fhir.document(note, patient_id, text))
        for record in rows["records"]:
            try:
                text = self._cipher.decrypt(
                    bytes(record["body_enc"]), f"clinical-record:{record['id']}"
                )
            except DecryptionError:
                unreadable += 1  # reported in the audit entry, never silently dropped
                continue
            resources.append(fhir.document(record, patient_id, text))
        for recording in rows["recordings"]:
            url = f"{self._public_url}/api/telemedicine/recording/{recording['id']}/media"
            resources.append(fhir.media(recording, patient_id, url))
        resources += [fhir.audit_event(a) for a in rows["audit"]]
        bundle = fhir.collection(resources, datetime.now(UTC))
        await self._audit.record(
            actor,
            "patient.export",
            resource_type="patient",
            resource_id=patient_id,
            classification="sensitive",
            details={
                "format": "fhir-r4",
                "resources": len(resources),
                "clinic": clinic,
                "unreadableRecords": unreadable,
            },
        )
        out: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
        return out


async def _rows(
    conn: asyncpg.Connection, patient_id: str, clinic: str | None
) -> dict[str, list[dict[str, Any]]]:
    sessions = [
        dict(r)
        for r in await conn.fetch(
            """SELECT * FROM sessions WHERE patient_id = $1
                 AND ($2::text IS NULL OR clinic_id = $2) ORDER BY scheduled_for, id""",
            patient_id,
            clinic,
        )
    ]
    ids = [s["id"] for s in sessions]

    async def of_sessions(sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await conn.fetch(sql, ids)]

    return {
        "sessions": sessions,
        "participants": await of_sessions(
            "SELECT * FROM session_participants WHERE session_id = ANY($1::uuid[])"
            " ORDER BY session_id, added_at"
        ),
        "records": await of_sessions(
            "SELECT * FROM clinical_records WHERE session_id = ANY($1::uuid[])"
            " ORDER BY created_at, id"
        ),
        "recordings": await of_sessions(
            "SELECT * FROM recordings WHERE session_id = ANY($1::uuid[])"
            " AND status = 'completed' ORDER BY started_at"
        ),
        "consents": [
            dict(r)
            for r in await conn.fetch(
                "SELECT * FROM consents WHERE patient_id = $1 ORDER BY granted_at, id", patient_id
            )
        ],
        "audit": [
            dict(r)
            for r in await conn.fetch(
                """SELECT id, at, actor_id, actor_role, action, outcome, resource_type,
                          resource_id, session_id FROM audit_log
                   WHERE session_id = ANY($1::uuid[])
                      OR (resource_type = 'patient' AND resource_id = $2)
                   ORDER BY id""",
                ids,
                patient_id,
            )
        ],
    }
