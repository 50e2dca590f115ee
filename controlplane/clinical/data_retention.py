"""The retention job: removes what is past its data class's period
(retention_policy.py), reports what it removed (log, audit entry, metrics) and
what is still past due (rows and bytes per class).

- clinical records: rows deleted, a session's encrypted notes cleared, once
  older than the clinical-record period;
- recordings: shredded per session type (recording_retention.RecordingRetention);
- alerts: deleted once raised longer ago than their period;
- audit entries: never removed (append-only chain); those past due are counted;
  passing verification results of the chain are kept 90 days, failures for ever;
- consents: kept (proof of lawful processing); live state and quality samples
  expire in Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import structlog

from controlplane.clinical.audit import SYSTEM, AuditLog
from controlplane.clinical.recording_retention import RecordingRetention

log = structlog.get_logger(__name__)


@dataclass
class RetentionReport:
    removed: dict[str, int] = field(default_factory=dict)
    # data class -> (rows, bytes) past their period after this run
    past_due: dict[str, tuple[int, int]] = field(default_factory=dict)


_PAST_DUE = """
SELECT 'clinical_record' AS class, count(*) AS n,
       coalesce(sum(octet_length(body_enc)), 0) AS bytes
  FROM clinical_records WHERE created_at < now() - make_interval(secs => $1)
UNION ALL
SELECT 'clinical_record', count(*), coalesce(sum(octet_length(notes_enc)), 0)
  FROM sessions WHERE notes_enc IS NOT NULL
   AND coalesce(ended_at, created_at) < now() - make_interval(secs => $1)
UNION ALL
SELECT 'alert', count(*), coalesce(sum(pg_column_size(a.*)), 0)
  FROM alerts a WHERE raised_at < now() - make_interval(secs => $2)
UNION ALL
SELECT 'audit', count(*), coalesce(sum(pg_column_size(l.*)), 0)
  FROM audit_log l WHERE at < now() - make_interval(secs => $3)
UNION ALL
SELECT 'recording', count(*), coalesce(sum(r.bytes), 0)
  FROM recordings r JOIN sessions s ON s.id = r.session_id
 WHERE r.status IN ('completed', 'failed')
   AND r.started_at < now() - make_interval(
       secs => ($4::jsonb ->> s.session_type)::double precision)
"""


class DataRetention:
    def __init__(
        self,
        pool: asyncpg.Pool,
        audit: AuditLog,
        periods: dict[str, int],
        recordings: RecordingRetention,
        recording_periods: dict[str, int],
        on_report: Callable[[RetentionReport], None] | None = None,
    ) -> None:
        self._pool = pool
        self._audit = audit
        self._periods = periods
        self._recordings = recordings
        self._recording_periods = recording_periods
        self._on_report = on_report

    async def enforce(self) -> RetentionReport:
        report = RetentionReport()
        record_age = float(self._periods["clinical_record"])
        async with self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                """DELETE FROM clinical_records
                   WHERE created_at < now() - make_interval(secs => $1) RETURNING id""",
                record_age,
            )
            notes = await conn.fetch(
                """UPDATE sessions SET notes_enc = NULL WHERE notes_enc IS NOT NULL
                     AND coalesce(ended_at, created_at) < now() - make_interval(secs => $1)
                   RETURNING id""",
                record_age,
            )
            report.removed["clinical_record"] = len(records) + len(notes)
            alerts = await conn.fetch(
                "DELETE FROM alerts WHERE raised_at < now() - make_interval(secs => $1) "
                "RETURNING id",
                float(self._periods["alert"]),
            )
            report.removed["alert"] = len(alerts)
            # The chain's verification results: the passing ones are kept 90 days.
            await conn.execute(
                "DELETE FROM audit_verifications WHERE status = 'ok' "
                "AND at < now() - interval '90 days'"
            )
            for data_class, count in report.removed.items():
                if count:
                    await self._audit.record(
                        SYSTEM,
                        "retention.remove",
                        resource_type=data_class,
                        details={
                            "count": count,
                            "retentionSeconds": self._periods[data_class],
                        },
                        connection=conn,
                    )
        report.removed["recording"] = len(await self._recordings.enforce())
        report.past_due = await self.past_due()
        if any(report.removed.values()):
            log.info("retention_applied", **report.removed)
        if self._on_report is not None:
            self._on_report(report)
        return report

    async def past_due(self) -> dict[str, tuple[int, int]]:
        rows = await self._pool.fetch(
            _PAST_DUE,
            float(self._periods["clinical_record"]),
            float(self._periods["alert"]),
            float(self._periods["audit"]),
            json.dumps(self._recording_periods),
        )
        due: dict[str, tuple[int, int]] = {}
        for row in rows:
            count, size = due.get(row["class"], (0, 0))
            due[row["class"]] = (count + int(row["n"]), size + int(row["bytes"]))
        return due

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.enforce()
            except Exception:
                log.exception("retention_failed")
            await asyncio.sleep(interval)
