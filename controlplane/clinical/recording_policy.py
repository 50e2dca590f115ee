"""Emergencies recorded automatically, where the clinic's policy asks for it
(``TELEMED_AUTO_RECORD_CLINICS``: clinic ids, or ``*`` for all) and the patient's
``recording`` consent is active.

The recording starts once the patient and at least one clinician send media and
no new producer has appeared for ``settle`` seconds (so that a participant's
microphone and camera, which arrive one after the other, are both in it).  It is
started by the system (audited as such) and announced to the room like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from controlplane.clinical.audit import SYSTEM
from controlplane.clinical.consents import ConsentStore
from controlplane.clinical.lifecycle import LiveRooms
from controlplane.clinical.recordings import RecordingService
from controlplane.clinical.session_access import SessionAccess
from controlplane.clinical.session_store import SessionStore
from schemas.errors import ApiError

log = structlog.get_logger(__name__)

AUTO_RECORDED_TYPES = frozenset({"emergency"})


class AutoRecorder:
    def __init__(
        self,
        recordings: RecordingService,
        store: SessionStore,
        access: SessionAccess,
        consents: ConsentStore,
        senders: Callable[[str], Awaitable[set[str]]],
        clinics: frozenset[str],
        settle: float = 1.5,
    ) -> None:
        self._recordings = recordings
        self._store = store
        self._access = access
        self._consents = consents
        self._senders = senders
        self._clinics = clinics
        self._settle = settle
        self._pending: dict[str, asyncio.Task[None]] = {}

    def producer_added(self, room_id: str) -> None:
        """A producer appeared in ``room_id``: check again once producers settle."""
        if not self._clinics:
            return
        earlier = self._pending.pop(room_id, None)
        if earlier is not None:
            earlier.cancel()
        task = asyncio.create_task(self._after_settling(room_id))
        self._pending[room_id] = task
        task.add_done_callback(
            lambda done: (
                self._pending.pop(room_id, None) if self._pending.get(room_id) is done else None
            )
        )

    async def _after_settling(self, room_id: str) -> None:
        await asyncio.sleep(self._settle)
        try:
            await self.check(room_id)
        except Exception:
            log.exception("auto_record_failed", room_id=room_id)

    async def check(self, room_id: str) -> str | None:
        """Start the recording if the policy, the consent and the senders allow."""
        session_id = await self._store.id_for_room(room_id)
        session = await self._access.session(session_id) if session_id else None
        if session is None or session.status != "active":
            return None
        if session.session_type not in AUTO_RECORDED_TYPES:
            return None
        if "*" not in self._clinics and session.clinic_id not in self._clinics:
            return None
        senders = await self._senders(room_id)
        if session.patient_id not in senders or len(senders) < 2:
            return None
        if not await self._consents.active(session.patient_id, "recording"):
            return None
        try:
            started = await self._recordings.begin(SYSTEM, session)
        except ApiError as exc:
            log.info("auto_record_not_started", room_id=room_id, code=str(exc.code))
            return None
        log.info("auto_record_started", room_id=room_id)
        return str(started["recordingId"])

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()


class StopRecordingsFirst:
    """Live rooms as the session lifecycle sees them: a room that closes (the
    session ended) has its recording completed first, not cut off."""

    def __init__(self, rooms: LiveRooms, recordings: RecordingService) -> None:
        self._rooms = rooms
        self._recordings = recordings

    async def close_room_for_session(self, room_id: str, reason: str) -> None:
        await self._recordings.stop_for_room(room_id, f"session_{reason}")
        await self._rooms.close_room_for_session(room_id, reason)

    async def participant_count(self, room_id: str) -> int:
        return await self._rooms.participant_count(room_id)
