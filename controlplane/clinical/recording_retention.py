"""How long recordings are kept, per session type, and the job that shreds the
ones past it.

Default: 20 years for every type.  Legal basis: in Brazil a consultation's
recording, when kept, is part of the patient's medical record (CFM Resolution
2.314/2022 on telemedicine), and medical records are kept for at least 20 years
from the last entry (Law 13.787/2018, art. 6; CFM Resolution 1.821/2007).  A clinic
that does not file recordings in the record may set shorter periods per type
(``TELEMED_RECORDING_RETENTION="consultation=365d,emergency=20y"``).
"""

from __future__ import annotations

import json

import asyncpg
import structlog

from controlplane.clinical.audit import SYSTEM, AuditLog
from controlplane.clinical.recording_rows import shred_finished
from controlplane.clinical.retention_policy import TWENTY_YEARS, parse_period
from controlplane.clinical.session_types import SESSION_TYPES

log = structlog.get_logger(__name__)

DEFAULT_RETENTION_SECONDS = TWENTY_YEARS


def parse_retention(spec: str) -> dict[str, int]:
    """Seconds per session type: the defaults, overridden by "type=<n><s|m|h|d|y>,...".
    Raises ValueError for an unknown type or a malformed period."""
    periods = dict.fromkeys(SESSION_TYPES, DEFAULT_RETENTION_SECONDS)
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, period = part.partition("=")
        name = name.strip()
        try:
            if name not in periods:
                raise ValueError(name)
            periods[name] = parse_period(period)
        except ValueError:
            raise ValueError(
                f"recording retention {part!r}: expected <session type>=<n><s|m|h|d|y>"
            ) from None
    return periods


class RecordingRetention:
    """Shreds (key and file) the recordings older than their session type's period."""

    def __init__(self, pool: asyncpg.Pool, audit: AuditLog, periods: dict[str, int]) -> None:
        self._pool = pool
        self._audit = audit
        self._periods = periods

    async def enforce(self) -> list[str]:
        async with self._pool.acquire() as conn:
            due = await conn.fetch(
                """SELECT r.id, r.session_id, s.session_type FROM recordings r
                   JOIN sessions s ON s.id = r.session_id
                   WHERE r.status IN ('completed', 'failed')
                     AND r.started_at < now() - make_interval(
                         secs => ($1::jsonb ->> s.session_type)::double precision)""",
                json.dumps(self._periods),
            )
        shredded = []
        for record in due:
            async with self._pool.acquire() as conn:
                if not await shred_finished(conn, record["id"], "retention"):
                    continue
            await self._audit.record(
                SYSTEM,
                "recording.retention_shred",
                resource_type="recording",
                resource_id=str(record["id"]),
                session_id=str(record["session_id"]),
                details={
                    "sessionType": record["session_type"],
                    "retentionSeconds": self._periods[record["session_type"]],
                },
            )
            shredded.append(str(record["id"]))
        if shredded:
            log.info("recordings_shredded_by_retention", count=len(shredded))
        return shredded
