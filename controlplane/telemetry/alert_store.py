"""Alerts in PostgreSQL: raised, cleared, and the ones still open per participant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class OpenAlert:
    rule: str
    severity: str
    raised_at: datetime


class AlertStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def raised(
        self,
        *,
        rule: str,
        severity: str,
        room_id: str,
        session_id: str | None,
        participant_id: str,
        call_type: str,
        description: str,
    ) -> int:
        alert_id = await self._pool.fetchval(
            """INSERT INTO alerts (rule, severity, room_id, session_id, participant_id,
                   call_type, description)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            rule,
            severity,
            room_id,
            uuid.UUID(session_id) if session_id else None,
            participant_id,
            call_type,
            description,
        )
        return int(alert_id)

    async def cleared(
        self, room_id: str, participant_id: str, rule: str, reason: str = "resolved"
    ) -> None:
        await self._pool.execute(
            """UPDATE alerts SET cleared_at = now(), clear_reason = $4 WHERE room_id = $1
               AND participant_id = $2 AND rule = $3 AND cleared_at IS NULL""",
            room_id,
            participant_id,
            rule,
            reason,
        )

    async def clear_all(self, room_id: str, participant_id: str, reason: str) -> list[str]:
        """Close every open alert of a participant (whichever instance raised it)."""
        rows = await self._pool.fetch(
            """UPDATE alerts SET cleared_at = now(), clear_reason = $3 WHERE room_id = $1
               AND participant_id = $2 AND cleared_at IS NULL RETURNING rule""",
            room_id,
            participant_id,
            reason,
        )
        return [str(r["rule"]) for r in rows]

    async def open_for(self, room_id: str, participant_id: str) -> list[OpenAlert]:
        rows = await self._pool.fetch(
            """SELECT rule, severity, raised_at FROM alerts WHERE room_id = $1
               AND participant_id = $2 AND cleared_at IS NULL ORDER BY raised_at""",
            room_id,
            participant_id,
        )
        return [OpenAlert(r["rule"], r["severity"], r["raised_at"]) for r in rows]
