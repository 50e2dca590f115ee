"""Consent (LGPD): versioned texts and per-purpose consent records with revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import asyncpg

from controlplane.clinical.audit import Actor, AuditLog
from schemas.errors import ApiError, ErrorCode

# companion: a family member or carer may join the patient's consultations.
PURPOSES = ("teleconsultation", "recording", "data_sharing", "companion")


class ConsentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def publish_text(self, purpose: str, body: str) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM consent_texts WHERE purpose = $1",
                purpose,
            )
            await conn.execute(
                "INSERT INTO consent_texts (purpose, version, body) VALUES ($1, $2, $3)",
                purpose,
                version,
                body,
            )
        return int(version)

    async def texts(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT DISTINCT ON (purpose) purpose, version, body, published_at
               FROM consent_texts ORDER BY purpose, version DESC"""
        )
        return [
            {
                "purpose": r["purpose"],
                "version": r["version"],
                "text": r["body"],
                "publishedAt": r["published_at"].isoformat(),
            }
            for r in rows
        ]

    async def text_exists(self, purpose: str, version: int) -> bool:
        return bool(
            await self._pool.fetchval(
                "SELECT 1 FROM consent_texts WHERE purpose = $1 AND version = $2", purpose, version
            )
        )

    async def grant(self, patient_id: str, purpose: str, version: int, by: str) -> int:
        consent_id = await self._pool.fetchval(
            """INSERT INTO consents (patient_id, purpose, version, granted_by)
               VALUES ($1, $2, $3, $4) RETURNING id""",
            patient_id,
            purpose,
            version,
            by,
        )
        return int(consent_id)

    async def revoke(self, patient_id: str, purpose: str, by: str) -> int:
        """Revoke every active consent of this purpose; returns how many were active."""
        result = await self._pool.execute(
            """UPDATE consents SET revoked_at = now(), revoked_by = $3
               WHERE patient_id = $1 AND purpose = $2 AND revoked_at IS NULL""",
            patient_id,
            purpose,
            by,
        )
        return int(result.split()[-1])

    async def active(self, patient_id: str, purpose: str) -> bool:
        return bool(
            await self._pool.fetchval(
                """SELECT 1 FROM consents WHERE patient_id = $1 AND purpose = $2
               AND revoked_at IS NULL LIMIT 1""",
                patient_id,
                purpose,
            )
        )

    async def history(self, patient_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM consents WHERE patient_id = $1 ORDER BY granted_at, id", patient_id
        )
        return [
            {
                "purpose": r["purpose"],
                "version": r["version"],
                "grantedAt": _iso(r["granted_at"]),
                "revokedAt": _iso(r["revoked_at"]),
                "active": r["revoked_at"] is None,
            }
            for r in rows
        ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class SessionEnder(Protocol):
    """Ends a patient's open sessions when their teleconsultation consent is revoked."""

    async def end_for_consent_revocation(self, patient_id: str) -> list[str]: ...


class RecordingStopper(Protocol):
    """Stops what records a patient when their recording consent is revoked."""

    async def stop_for_consent_revocation(self, patient_id: str) -> list[str]: ...


class ConsentService:
    """Consent rules and their audit trail (REST handlers and tooling call this).

    Publishing texts: admins.  Recording, revoking and reading a patient's
    consent: the patient themself or a coordinator (reading also admins).
    Revoking teleconsultation consent takes effect at once: ``sessions`` ends
    the patient's open sessions.
    """

    def __init__(
        self,
        store: ConsentStore,
        audit: AuditLog,
        sessions: SessionEnder,
        recordings: RecordingStopper | None = None,
    ) -> None:
        self.store = store
        self._audit = audit
        self._sessions = sessions
        self.recordings = recordings

    async def publish_text(self, actor: Actor, purpose: str, text: str) -> int:
        if actor.role != "admin":
            raise ApiError(ErrorCode.FORBIDDEN, "requires one of the roles: admin")
        version = await self.store.publish_text(purpose, text)
        await self._audit.record(
            actor,
            "consent_text.publish",
            resource_type="consent_text",
            resource_id=f"{purpose}:{version}",
            classification="public",
        )
        return version

    async def _may_manage(self, actor: Actor, action: str, patient_id: str) -> None:
        if actor.role == "coordinator" or (actor.role == "patient" and actor.id == patient_id):
            return
        verb = "record" if action == "consent.grant" else "revoke"
        raise await self._audit.deny(
            actor,
            action,
            ErrorCode.FORBIDDEN,
            f"only the patient or a coordinator may {verb} consent",
            resource_type="patient",
            resource_id=patient_id,
        )

    async def grant(self, actor: Actor, patient_id: str, purpose: str, version: int) -> int:
        await self._may_manage(actor, "consent.grant", patient_id)
        if not await self.store.text_exists(purpose, version):
            raise ApiError(ErrorCode.NOT_FOUND, "no such consent text version")
        consent_id = await self.store.grant(patient_id, purpose, version, str(actor.id))
        await self._audit.record(
            actor,
            "consent.grant",
            resource_type="patient",
            resource_id=patient_id,
            classification="personal",
            details={"purpose": purpose, "version": version},
        )
        return consent_id

    async def revoke(self, actor: Actor, patient_id: str, purpose: str) -> dict[str, Any]:
        await self._may_manage(actor, "consent.revoke", patient_id)
        revoked = await self.store.revoke(patient_id, purpose, str(actor.id))
        await self._audit.record(
            actor,
            "consent.revoke",
            resource_type="patient",
            resource_id=patient_id,
            classification="personal",
            details={"purpose": purpose, "revoked": revoked},
        )
        ended: list[str] = []
        if purpose == "teleconsultation" and revoked:
            ended = await self._sessions.end_for_consent_revocation(patient_id)
        stopped: list[str] = []
        if purpose in ("recording", "teleconsultation") and revoked and self.recordings:
            stopped = await self.recordings.stop_for_consent_revocation(patient_id)
        return {"revoked": revoked, "endedSessions": ended, "stoppedRecordings": stopped}

    async def history(self, actor: Actor, patient_id: str) -> list[dict[str, Any]]:
        if not (actor.role in ("coordinator", "admin") or actor.id == patient_id):
            raise await self._audit.deny(
                actor,
                "consent.read",
                ErrorCode.NOT_FOUND,
                "patient not found",
                resource_type="patient",
                resource_id=patient_id,
            )
        await self._audit.record(
            actor,
            "consent.read",
            resource_type="patient",
            resource_id=patient_id,
            classification="personal",
        )
        return await self.store.history(patient_id)
