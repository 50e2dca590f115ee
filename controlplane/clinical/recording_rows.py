"""A recording's row (table ``recordings``, migrations 0004 and 0005) and its public
form.  A recording is one or more segments (files), in order; see
sfu_worker/src/recorder.js for why."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from schemas.errors import ApiError, ErrorCode


async def shred_finished(conn: asyncpg.Connection, recording_id: Any, reason: str) -> bool:
    """Crypto-shred a completed or failed recording: its wrapped key is cleared (no
    copy of its files can be decrypted again), then its files are deleted.  False
    when it is not finished or was shredded already (by a concurrent request)."""
    segments = await conn.fetchval(
        """UPDATE recordings SET status = 'deleted', wrapped_key = NULL,
               stop_reason = coalesce(stop_reason, $2)
           WHERE id = $1 AND status IN ('completed', 'failed') RETURNING segments""",
        recording_id,
        reason,
    )
    if segments is None:
        return False
    for segment in json.loads(segments):
        await asyncio.to_thread(Path(segment["file"]).unlink, missing_ok=True)
    return True


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
    wrapped_key: bytes | None
    stop_reason: str | None
    segments: list[dict[str, Any]]

    @property
    def files(self) -> list[str]:
        return [str(segment["file"]) for segment in self.segments if segment.get("file")]

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
            "segments": [self._public_segment(segment) for segment in self.segments],
        }

    def _public_segment(self, segment: dict[str, Any]) -> dict[str, Any]:
        first = self.segments[0]["startedAt"]
        return {
            "index": segment["index"],
            "offsetSeconds": round((segment["startedAt"] - first) / 1000, 3),
            "durationSeconds": round((segment["stoppedAt"] - segment["startedAt"]) / 1000, 3),
            "bytes": segment["bytes"],
            "sha256": segment["sha256"],
            "tracks": segment["streams"],
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
        wrapped_key=bytes(record["wrapped_key"]) if record["wrapped_key"] else None,
        stop_reason=record["stop_reason"],
        segments=json.loads(record["segments"]),
    )


def completed_columns(result: dict[str, Any], reason: str) -> dict[str, Any]:
    """The columns of a recording the SFU node completed (its ``stopRecording``
    answer): the total size, the segments, every track; the SHA-256 is the one
    file's when there is one (each segment has its own)."""
    segments = list(result["segments"])
    tracks: dict[str, Any] = {}
    for segment in segments:
        for stream in segment["streams"]:
            tracks.setdefault(str(stream["producerId"]), stream)
    return {
        "status": "completed",
        "stopped_at": datetime.fromtimestamp(result["stoppedAt"] / 1000, UTC),
        "duration_ms": int(result["stoppedAt"] - result["startedAt"]),
        "bytes": int(result["bytes"]),
        "sha256": str(segments[0]["sha256"]) if len(segments) == 1 else None,
        "segments": json.dumps(segments),
        "tracks": json.dumps(list(tracks.values())),
        "stop_reason": reason,
    }


class RecordingRows:
    """Reads and updates of the ``recordings`` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, recording_id: str) -> RecordingRow | None:
        async with self._pool.acquire() as conn:
            record = await conn.fetchrow(
                "SELECT * FROM recordings WHERE id = $1", uuid.UUID(recording_id)
            )
        return row_of(record) if record is not None else None

    async def load(self, recording_id: str) -> RecordingRow:
        row = await self.find(recording_id)
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, "recording not found")
        return row

    async def set(
        self, recording_id: str, *, while_recording: bool = False, **columns: Any
    ) -> str | None:
        """Update a recording (only if it still records, ``while_recording``); its
        session id, None when no row changed."""
        names = list(columns)
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        live = " AND status = 'recording'" if while_recording else ""
        async with self._pool.acquire() as conn:
            session_id = await conn.fetchval(
                f"UPDATE recordings SET {assignments} WHERE id = $1{live} RETURNING session_id",
                uuid.UUID(recording_id),
                *columns.values(),
            )
        return str(session_id) if session_id is not None else None
