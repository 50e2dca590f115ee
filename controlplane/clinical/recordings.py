"""Consent-gated recording of consultations: who may record, the per-recording
key, the recording's record, and who may read it.

Each recording gets a fresh age X25519 identity.  Its public half goes to the SFU
node, which encrypts the stream as ffmpeg writes it (sfu_worker/src/recorder.js);
the private half is stored only wrapped by the configured key-encryption key
(``FieldCipher``: the first of TELEMED_DATA_KEYS wraps, the others still unwrap),
bound to the recording's id.  Deleting a recording destroys the wrapped key and
the file: a copy of the file kept anywhere else is then unreadable.

Rules: only the session's physician or a coordinator of its clinic may start or
stop a recording, only while the session is active and the patient has an active
``recording`` consent (else RECORDING_PERMISSION_DENIED).  The session's physician
and patient and its clinic's coordinators may read and download.  Everything is
audited.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import structlog
from pyrage import x25519

from controlplane.auth import ApiClaims
from controlplane.clinical.audit import SYSTEM, Actor, AuditLog
from controlplane.clinical.consents import ConsentStore
from controlplane.clinical.field_crypto import DecryptionError, FieldCipher
from controlplane.clinical.recording_media import decrypted, streamed, watermarked
from controlplane.clinical.recording_rows import (
    RecordingRow,
    RecordingRows,
    completed_columns,
    row_of,
)
from controlplane.clinical.session_access import Rule, SessionAccess, actor_of
from controlplane.clinical.session_store import SessionRow
from schemas.errors import ApiError, ErrorCode
from schemas.ids import is_uuid

log = structlog.get_logger(__name__)


class RoomRecorder(Protocol):
    """What recording needs of live rooms (media/recording_capture.py)."""

    async def start_capture(
        self, room_id: str, recording_id: str, recipient: str
    ) -> tuple[str, list[dict[str, Any]]]: ...

    async def announce_started(self, room_id: str, recording_id: str) -> None: ...

    async def stop_capture(
        self, room_id: str, node_id: str, recording_id: str, reason: str
    ) -> dict[str, Any]: ...


_ONLY_RECORDERS = "only the session's physician or a coordinator of its clinic may do this"
_ONLY_WATCHERS = (
    "only the session's physician and patient and its clinic's coordinators may see its recordings"
)


def _may_record(claims: ApiClaims, session: SessionRow) -> bool:
    return claims.subject == session.physician_id or (
        claims.role == "coordinator" and claims.clinic == session.clinic_id
    )


def _may_watch(claims: ApiClaims, session: SessionRow) -> bool:
    return _may_record(claims, session) or claims.subject == session.patient_id


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class RecordingService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        access: SessionAccess,
        consents: ConsentStore,
        audit: AuditLog,
        cipher: FieldCipher,
        recorder: RoomRecorder,
    ) -> None:
        self._pool = pool
        self._rows = RecordingRows(pool)
        self._access = access
        self._consents = consents
        self._audit = audit
        self._cipher = cipher
        self._recorder = recorder

    # ---- start and stop -------------------------------------------------------------

    async def start(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        session = await self._access.guarded(
            claims, session_id, "recording.start", _may_record, _ONLY_RECORDERS
        )
        if session.status != "active":
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        if not await self._consents.active(session.patient_id, "recording"):
            raise await self._audit.deny(
                actor_of(claims),
                "recording.start",
                ErrorCode.RECORDING_PERMISSION_DENIED,
                "the patient has not consented to recording",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": "no recording consent"},
            )
        return await self.begin(actor_of(claims), session)

    async def begin(self, actor: Actor, session: SessionRow) -> dict[str, Any]:
        """Record an active session whose rules were checked (CONFLICT when it
        already records)."""
        session_id = session.id
        recording_id = str(uuid.uuid4())
        identity = x25519.Identity.generate()
        wrapped = self._cipher.encrypt(str(identity), f"recording:{recording_id}")
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    """INSERT INTO recordings (id, session_id, status, started_by, node_id,
                           wrapped_key) VALUES ($1, $2, 'recording', $3, '', $4)""",
                    uuid.UUID(recording_id),
                    uuid.UUID(session_id),
                    str(actor.id),
                    wrapped,
                )
        except asyncpg.UniqueViolationError:
            raise ApiError(ErrorCode.CONFLICT, "the consultation is already recording") from None
        try:
            node_id, streams = await self._recorder.start_capture(
                session.room_id, recording_id, str(identity.to_public())
            )
        except ApiError as exc:
            await self._rows.set(
                recording_id, status="failed", failure=exc.message, wrapped_key=None
            )
            raise
        await self._rows.set(recording_id, node_id=node_id, tracks=json.dumps(streams))
        # Only now: a participant told of the recording lists it with its tracks.
        await self._recorder.announce_started(session.room_id, recording_id)
        await self._note(
            actor, "recording.start", recording_id, session_id, details={"tracks": len(streams)}
        )
        return (await self._rows.load(recording_id)).public()

    async def stop(self, claims: ApiClaims, recording_id: str) -> dict[str, Any]:
        row, session = await self._visible(claims, recording_id, "recording.stop", _may_record)
        return await self._stop(actor_of(claims), row, session, "stopped")

    async def _stop(
        self, actor: Actor, row: RecordingRow, session: SessionRow, reason: str
    ) -> dict[str, Any]:
        if row.status != "recording":
            raise ApiError(ErrorCode.CONFLICT, f"the recording is {row.status}")
        try:
            result = await self._recorder.stop_capture(session.room_id, row.node_id, row.id, reason)
        except ApiError as exc:
            await self.mark_failed(row.id, exc.message)
            raise
        await self._rows.set(row.id, **completed_columns(result, reason))
        await self._note_stop(actor, row.id, row.session_id, reason, result)
        return (await self._rows.load(row.id)).public()

    async def completed_by_node(self, result: dict[str, Any]) -> str | None:
        """The SFU node completed a recording as it shut down (``recording.stopped``):
        store it as completed.  The room it recorded (None when nothing changed:
        every control plane hears the notice, one of them acts on it)."""
        recording_id = str(result.get("recordingId"))
        if not is_uuid(recording_id):
            return None
        reason = str(result.get("reason") or "node_shutdown")
        columns = completed_columns(result, reason)
        session_id = await self._rows.set(recording_id, while_recording=True, **columns)
        if session_id is None:
            return None
        await self._note_stop(SYSTEM, recording_id, str(session_id), reason, result)
        session = await self._access.session(str(session_id))
        return session.room_id if session else None

    async def stop_for_consent_revocation(self, patient_id: str) -> list[str]:
        """The patient revoked their recording consent: stop what records them."""
        return await self._stop_where("s.patient_id = $1", patient_id, "consent_revoked")

    async def stop_for_room(self, room_id: str, reason: str) -> list[str]:
        """The session ends (its room closes): complete its recording first."""
        return await self._stop_where("s.room_id = $1", room_id, reason)

    async def _stop_where(self, condition: str, value: str, reason: str) -> list[str]:
        async with self._pool.acquire() as conn:
            ids = await conn.fetch(
                f"""SELECT r.id FROM recordings r JOIN sessions s ON s.id = r.session_id
                    WHERE {condition} AND r.status = 'recording'""",
                value,
            )
        stopped = []
        for record in ids:
            row = await self._rows.load(str(record["id"]))
            session = await self._access.session(row.session_id)
            if session is None:
                continue
            try:
                await self._stop(SYSTEM, row, session, reason)
            except ApiError:
                continue  # marked failed (and audited) by _stop
            stopped.append(row.id)
        return stopped

    async def fail_on_node(self, node_id: str) -> list[tuple[str, str]]:
        """The SFU node was lost: its live recordings died with it.  Returns
        (recording id, room id) of each one marked failed (and audited)."""
        async with self._pool.acquire() as conn:
            ids = await conn.fetch(
                "SELECT id FROM recordings WHERE node_id = $1 AND status = 'recording'", node_id
            )
        failed = []
        for record in ids:
            room_id = await self.mark_failed(str(record["id"]), "the SFU node was lost")
            if room_id is not None:
                failed.append((str(record["id"]), room_id))
        return failed

    async def mark_failed(self, recording_id: str, reason: str) -> str | None:
        """The recorder died (or could not complete the file): never silently.
        Returns the room of the session it recorded (None when nothing changed)."""
        if not is_uuid(recording_id):
            return None
        # Every control plane hears the node's notice: one of them acts on it.
        session_id = await self._rows.set(
            recording_id, while_recording=True, status="failed", failure=reason[:500]
        )
        if session_id is None:
            return None
        await self._note(
            SYSTEM,
            "recording.failed",
            recording_id,
            str(session_id),
            details={"reason": reason[:200]},
            outcome="error",
        )
        session = await self._access.session(str(session_id))
        return session.room_id if session else None

    # ---- reading ------------------------------------------------------------------

    async def get(self, claims: ApiClaims, recording_id: str) -> dict[str, Any]:
        row, _ = await self._visible(claims, recording_id, "recording.read", _may_watch)
        await self._note(actor_of(claims), "recording.read", recording_id, row.session_id)
        return row.public()

    async def of_session(self, claims: ApiClaims, session_id: str) -> list[dict[str, Any]]:
        await self._access.guarded(claims, session_id, "recording.list", _may_watch, _ONLY_WATCHERS)
        async with self._pool.acquire() as conn:
            records = await conn.fetch(
                "SELECT * FROM recordings WHERE session_id = $1 ORDER BY started_at",
                uuid.UUID(session_id),
            )
        return [row_of(record).public() for record in records]

    async def _media_source(
        self, claims: ApiClaims, recording_id: str, *, watermark: bool = False
    ) -> tuple[list[dict[str, Any]], x25519.Identity]:
        """What a download reads (the segments and the key), the download audited."""
        row, _ = await self._visible(claims, recording_id, "recording.download", _may_watch)
        if row.status != "completed" or row.wrapped_key is None or not row.segments:
            raise ApiError(ErrorCode.CONFLICT, f"the recording is {row.status}")
        try:
            identity = x25519.Identity.from_str(
                self._cipher.decrypt(row.wrapped_key, f"recording:{row.id}")
            )
        except DecryptionError:
            log.error("recording_key_unwrap_failed", recording_id=row.id)
            raise ApiError(
                ErrorCode.CONFLICT, "the recording's key cannot be opened with the configured keys"
            ) from None
        await self._note(
            actor_of(claims),
            "recording.download",
            recording_id,
            row.session_id,
            details={"watermark": watermark},
        )
        return row.segments, identity

    async def media(
        self, claims: ApiClaims, recording_id: str, *, watermark: bool = False
    ) -> bytes:
        """The decrypted file, its segments joined (watermarked on request)."""
        segments, identity = await self._media_source(claims, recording_id, watermark=watermark)
        media = await decrypted(segments, identity)
        return await watermarked(media, claims.subject) if watermark else media

    async def media_chunks(self, claims: ApiClaims, recording_id: str) -> AsyncIterator[bytes]:
        """The whole decrypted file for a download, audited: a one-segment file
        as it is decrypted (memory stays small), joined segments in one piece."""
        segments, identity = await self._media_source(claims, recording_id)
        if len(segments) == 1:
            return streamed(segments[0], identity)
        return _once(await decrypted(segments, identity))

    async def delete(self, claims: ApiClaims, recording_id: str) -> dict[str, Any]:
        """Crypto-shredding: the wrapped key goes, then the file; the row stays."""
        row, session = await self._visible(claims, recording_id, "recording.delete", _may_record)
        if row.status == "recording":
            await self._stop(actor_of(claims), row, session, "deleted")
        await self._rows.set(recording_id, status="deleted", wrapped_key=None)
        for file in row.files:
            await asyncio.to_thread(Path(file).unlink, missing_ok=True)
        await self._note(actor_of(claims), "recording.delete", recording_id, row.session_id)
        return (await self._rows.load(recording_id)).public()

    # ---- store ----------------------------------------------------------------------

    async def _note(
        self,
        actor: Actor,
        action: str,
        recording_id: str,
        session_id: str,
        *,
        details: dict[str, Any] | None = None,
        outcome: str = "success",
    ) -> None:
        """The audit entry of an action on a recording."""
        await self._audit.record(
            actor,
            action,
            outcome=outcome,
            resource_type="recording",
            resource_id=recording_id,
            session_id=session_id,
            details=details,
        )

    async def _note_stop(
        self, actor: Actor, recording_id: str, session_id: str, reason: str, result: dict[str, Any]
    ) -> None:
        details = {
            "reason": reason,
            "bytes": int(result["bytes"]),
            "segments": len(result["segments"]),
        }
        await self._note(actor, "recording.stop", recording_id, session_id, details=details)

    async def _visible(
        self, claims: ApiClaims, recording_id: str, action: str, rule: Rule
    ) -> tuple[RecordingRow, SessionRow]:
        row = await self._rows.find(recording_id) if is_uuid(recording_id) else None
        if row is None:
            raise await self._audit.deny(
                actor_of(claims),
                action,
                ErrorCode.NOT_FOUND,
                "recording not found",
                resource_type="recording",
                resource_id=recording_id[:64],
            )
        message = _ONLY_RECORDERS if rule is _may_record else _ONLY_WATCHERS
        session = await self._access.guarded(claims, row.session_id, action, rule, message)
        return row, session
