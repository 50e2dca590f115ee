"""Audit search for admins: filter by subject (a patient: entries about them or
their sessions), actor, action (exact, or a prefix ending in ``*``) and time,
newest first, paginated by entry id (``before``).  An admin sees the entries of
their clinic's sessions, about their clinic's patients, and the platform-wide
ones that concern no session and no patient (sign-in refusals, rate limits,
consent texts).  Every search is itself audited (filters' presence, not values).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from controlplane.clinical.audit import Actor, AuditLog

MAX_PAGE = 500

_SEARCH = """
SELECT id, at, actor_id, actor_role, action, outcome, resource_type, resource_id,
       session_id, classification, details
  FROM audit_log a
 WHERE ($1::bigint IS NULL OR a.id < $1)
   AND ($2::text IS NULL OR a.actor_id = $2)
   AND ($3::text IS NULL OR a.action = $3 OR ($4 AND a.action LIKE $3 || '%'))
   AND ($5::timestamptz IS NULL OR a.at >= $5)
   AND ($6::timestamptz IS NULL OR a.at < $6)
   AND ($7::text IS NULL
        OR (a.resource_type = 'patient' AND a.resource_id = $7)
        OR a.session_id IN (SELECT id FROM sessions WHERE patient_id = $7))
   AND (a.session_id IN (SELECT id FROM sessions WHERE clinic_id = $8)
        OR (a.resource_type = 'patient' AND a.resource_id IN (
              SELECT patient_id FROM sessions WHERE clinic_id = $8))
        OR (a.session_id IS NULL AND a.resource_type IS DISTINCT FROM 'patient'))
 ORDER BY a.id DESC
 LIMIT $9
"""


class AuditSearch:
    def __init__(self, pool: asyncpg.Pool, audit: AuditLog) -> None:
        self._pool = pool
        self._audit = audit

    async def search(
        self,
        actor: Actor,
        clinic: str,
        *,
        subject: str | None = None,
        actor_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 100,
        output: str = "json",
    ) -> tuple[list[dict[str, Any]], int | None]:
        """(entries newest first, the ``before`` of the next page or None)."""
        prefix = action is not None and action.endswith("*")
        rows = await self._pool.fetch(
            _SEARCH,
            before,
            actor_id,
            action.rstrip("*") if action else None,
            prefix,
            since,
            until,
            subject,
            clinic,
            min(limit, MAX_PAGE) + 1,
        )
        entries = [dict(r) for r in rows[: min(limit, MAX_PAGE)]]
        more = len(rows) > len(entries)
        await self._audit.record(
            actor,
            "audit.search",
            resource_type="patient" if subject else None,
            resource_id=subject,
            details={
                "clinic": clinic,
                "format": output,
                "byActor": actor_id is not None,
                "byAction": action is not None,
                "byTime": since is not None or until is not None,
                "entries": len(entries),
            },
        )
        return entries, (int(entries[-1]["id"]) if more and entries else None)
