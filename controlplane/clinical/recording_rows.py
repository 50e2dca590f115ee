"""A recording's row (table ``recordings``, migration 0004) and its public form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class RecordingRow:
    id: str
    session_id: str
    status: str
    started_by: str
    started_at: datetime
    stopped_at: datetime | None
    duration_ms: int | None
    size: int | None
    sha256: str | None
    tracks: list[dict[str, Any]]
    node_id: str
    file: str | None
    wrapped_key: bytes | None
    stop_reason: str | None

    def public(self) -> dict[str, Any]:
        return {
            "recordingId": self.id,
            "sessionId": self.session_id,
            "status": self.status,
            "startedBy": self.started_by,
            "startedAt": self.started_at.isoformat(),
            "stoppedAt": self.stopped_at.isoformat() if self.stopped_at else None,
            "durationSeconds": round(self.duration_ms / 1000, 3) if self.duration_ms else None,
            "bytes": self.size,
            "sha256": self.sha256,
            "tracks": self.tracks,
            "stopReason": self.stop_reason,
        }


def row_of(record: asyncpg.Record) -> RecordingRow:
    return RecordingRow(
        id=str(record["id"]),
        session_id=str(record["session_id"]),
        status=record["status"],
        started_by=record["started_by"],
        started_at=record["started_at"],
        stopped_at=record["stopped_at"],
        duration_ms=record["duration_ms"],
        size=record["bytes"],
        sha256=record["sha256"],
        tracks=json.loads(record["tracks"]),
        node_id=record["node_id"],
        file=record["file"],
        wrapped_key=bytes(record["wrapped_key"]) if record["wrapped_key"] else None,
        stop_reason=record["stop_reason"],
    )
