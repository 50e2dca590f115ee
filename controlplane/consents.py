"""Consent (LGPD): versioned texts and per-purpose consent records with revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

PURPOSES = ("teleconsultation", "recording", "data_sharing")


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
