"""Recording a live room on its SFU node (the recorder beside the node:
sfu_worker/src/recorder.js), and telling the room it is recorded.

Everyone in the room gets ``recordingStarted`` / ``recordingStopped``; the page
shows an indicator for as long as it records.
"""

from __future__ import annotations

from typing import Any

import structlog

from controlplane.media.ports import Notifier
from controlplane.media.room_state import RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuRegistry
from controlplane.placement.sfu_client import SfuError, SfuRequestError
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class RoomCapture:
    def __init__(self, state: RoomState, registry: SfuRegistry, notifier: Notifier) -> None:
        self._state = state
        self._registry = registry
        self._notifier = notifier

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
        await self._notifier.to_room(room_id, "recordingStarted", {"recordingId": recording_id})
        log.info("recording_started", room_id=room_id, streams=len(answer["streams"]))
        return room.nodeId, list(answer["streams"])

    async def senders(self, room_id: str) -> set[str]:
        """Who in the room sends media now."""
        return {p.peerId for p in await self._state.producers_in_room(room_id)}

    async def stop_capture(
        self, room_id: str, node_id: str, recording_id: str, reason: str
    ) -> dict[str, Any]:
        try:
            client = await self._registry.client(node_id)
            result: dict[str, Any] = await client.request(
                "stopRecording", {"recordingId": recording_id}
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
