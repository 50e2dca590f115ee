"""Clinical documentation of a session: notes, prescriptions and follow-ups.

Only the session's physician writes them; the text is encrypted (AES-256-GCM)
before it reaches the database and bound to its record id.  The session's
physician and patient may read them back (every read is audited).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from controlplane.auth import ApiClaims
from controlplane.clinical.audit import AuditLog
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.session_access import SessionAccess, actor_of
from schemas.errors import ApiError, ErrorCode

KINDS = ("note", "prescription", "followup")


class ClinicalRecords:
    def __init__(
        self, pool: asyncpg.Pool, access: SessionAccess, audit: AuditLog, cipher: FieldCipher
    ) -> None:
        self._pool = pool
        self._access = access
        self._audit = audit
        self._cipher = cipher

    async def write(
        self,
        claims: ApiClaims,
        kind: str,
        session_id: str,
        text: str,
        due_at: datetime | None = None,
    ) -> dict[str, Any]:
        actor = actor_of(claims)
        session = await self._access.for_records(claims, session_id, f"{kind}.write")
        if claims.role != "physician" or claims.subject != session.physician_id:
            raise await self._audit.deny(
                actor,
                f"{kind}.write",
                ErrorCode.FORBIDDEN,
                "only the session's physician may write this",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": "not the physician"},
            )
        if session.status not in ("active", "ended"):
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        record_id = uuid.uuid4()
        body = self._cipher.encrypt(text, f"clinical-record:{record_id}")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO clinical_records (id, session_id, author_id, kind, body_enc, due_at)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                record_id,
                uuid.UUID(session.id),
                claims.subject,
                kind,
                body,
                due_at,
            )
            await self._audit.record(
                actor,
                f"{kind}.write",
                resource_type="clinical_record",
                resource_id=str(record_id),
                session_id=session_id,
                classification="confidential",
                connection=conn,
            )
        return {
            "id": str(record_id),
            "sessionId": session_id,
            "kind": kind,
            "classification": "confidential",
        }

    async def read(self, claims: ApiClaims, session_id: str) -> list[dict[str, Any]]:
        session = await self._access.for_records(claims, session_id, "clinical_record.read")
        rows = await self._pool.fetch(
            "SELECT * FROM clinical_records WHERE session_id = $1 ORDER BY created_at, id",
            uuid.UUID(session.id),
        )
        await self._audit.record(
            actor_of(claims),
            "clinical_record.read",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
            classification="confidential",
            details={"records": len(rows)},
        )
        return [
            {
                "id": str(r["id"]),
                "kind": r["kind"],
                "authorId": r["author_id"],
                "text": self._cipher.decrypt(bytes(r["body_enc"]), f"clinical-record:{r['id']}"),
                "dueAt": r["due_at"].isoformat() if r["due_at"] else None,
                "createdAt": r["created_at"].isoformat(),
                "classification": r["classification"],
            }
            for r in rows
        ]
