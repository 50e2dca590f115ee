"""Recording a live room on its SFU node (the recorder beside the node:
sfu_worker/src/recorder.js), and telling the room it is recorded.

Everyone in the room gets ``recordingStarted`` / ``recordingStopped``; the page
shows an indicator for as long as it records.  A producer that appears while the
room records (a screen share, a late participant) is added to the recording: the
node starts a new segment with it (``extendRecording``), once producers have
settled for a moment so that a microphone and camera arriving together make one
segment, not two.  A producer the node cannot add yet (it has sent nothing, so
ffmpeg could not write a header for it; or the new segment did not start) is
answered ``waiting`` while the recording goes on: it is asked for again every
2 s for as long as the room records and the producer exists.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from controlplane.media.ports import Notifier
from controlplane.media.room_state import RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuRegistry
from controlplane.placement.sfu_client import SfuError, SfuRequestError
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

EXTEND_TIMEOUT = 20.0  # a new segment waits up to 8 s for ffmpeg's header
# A stop waits on the node behind an extend in progress (up to EXTEND_TIMEOUT),
# then for ffmpeg to complete its file.
STOP_TIMEOUT = EXTEND_TIMEOUT + 10.0
WAITING_RETRY = 2.0


class RoomCapture:
    def __init__(
        self,
        state: RoomState,
        registry: SfuRegistry,
        notifier: Notifier,
        settle: float = 1.0,
    ) -> None:
        self._state = state
        self._registry = registry
        self._notifier = notifier
        self._settle = settle
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def start_capture(
        self, room_id: str, recording_id: str, recipient: str
    ) -> tuple[str, list[dict[str, Any]]]:
        room = await self._state.get_room(room_id)
        producers = [p.producerId for p in await self._state.producers_in_room(room_id)]
        if room is None or not producers:
            raise ApiError(ErrorCode.CONFLICT, "nobody sends media in the consultation yet")
        try:
            client = await self._registry.client(room.nodeId)
            answer = await client.request(
                "startRecording",
                {
                    "routerId": room.routerId,
                    "recordingId": recording_id,
                    "producerIds": producers,
                    "recipient": recipient,
                },
            )
        except SfuError as exc:
            log.error("recording_start_failed", room_id=room_id, error=str(exc))
            raise sfu_api_error(exc, "start recording") from exc
        await self._state.set_recording(room_id, recording_id)
        log.info("recording_started", room_id=room_id, streams=len(answer["streams"]))
        return room.nodeId, list(answer["streams"])

    async def announce_started(self, room_id: str, recording_id: str) -> None:
        """Tell the room (once the recording's row has its tracks), and add any
        producer that appeared while it started."""
        await self._notifier.to_room(room_id, "recordingStarted", {"recordingId": recording_id})
        self.producer_added(room_id)

    def producer_added(self, room_id: str) -> None:
        """A producer appeared in ``room_id``: add it to the room's recording, if it
        records, once producers have settled."""
        self._schedule(room_id, self._settle)

    def _schedule(self, room_id: str, delay: float) -> None:
        earlier = self._pending.pop(room_id, None)
        if earlier is not None and earlier is not asyncio.current_task():
            earlier.cancel()
        task = asyncio.create_task(self._extend_after(room_id, delay))
        self._pending[room_id] = task
        task.add_done_callback(
            lambda done: (
                self._pending.pop(room_id, None) if self._pending.get(room_id) is done else None
            )
        )

    async def _extend_after(self, room_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        recording_id = await self._state.recording_of(room_id)
        room = await self._state.get_room(room_id)
        if room is None or not recording_id:
            return
        producers = [p.producerId for p in await self._state.producers_in_room(room_id)]
        try:
            client = await self._registry.client(room.nodeId)
            answer = await client.request(
                "extendRecording",
                {"recordingId": recording_id, "producerIds": producers},
                timeout=EXTEND_TIMEOUT,
            )
        except SfuError as exc:
            # A recorder that failed says so itself (recording.failed).
            log.warning("recording_extend_failed", room_id=room_id, error=str(exc))
            return
        if answer.get("added"):
            log.info("recording_segment_started", room_id=room_id, segment=answer["segment"])
        if answer.get("waiting"):
            log.info("recording_streams_waiting", room_id=room_id, waiting=len(answer["waiting"]))
            self._schedule(room_id, WAITING_RETRY)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()

    async def senders(self, room_id: str) -> set[str]:
        """Who in the room sends media now."""
        return {p.peerId for p in await self._state.producers_in_room(room_id)}

    async def stop_capture(
        self, room_id: str, node_id: str, recording_id: str, reason: str
    ) -> dict[str, Any]:
        try:
            client = await self._registry.client(node_id)
            result: dict[str, Any] = await client.request(
                "stopRecording", {"recordingId": recording_id}, timeout=STOP_TIMEOUT
            )
        except SfuRequestError as exc:
            await self.tell_stopped(room_id, recording_id, "failed")
            raise ApiError(
                ErrorCode.INTERNAL_ERROR, "the recording could not be completed"
            ) from exc
        except SfuError as exc:
            raise sfu_api_error(exc, "stop recording") from exc
        await self.tell_stopped(room_id, recording_id, reason)
        return result

    async def tell_stopped(self, room_id: str, recording_id: str, reason: str) -> None:
        await self._state.set_recording(room_id, None)
        await self._notifier.to_room(
            room_id, "recordingStopped", {"recordingId": recording_id, "reason": reason}
        )
