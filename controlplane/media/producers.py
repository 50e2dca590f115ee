"""Producers of a participant (one per source: mic, camera, screen): create,
pause/resume and close on the SFU, and tell the room."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from controlplane.media.participants import LocalParticipants
from controlplane.media.ports import Notifier
from controlplane.media.room_state import ProducerRecord, RoomState, producer_payload
from controlplane.media.routers import RoomRouters
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class Producers:
    def __init__(
        self,
        participants: LocalParticipants,
        routers: RoomRouters,
        state: RoomState,
        notifier: Notifier,
    ) -> None:
        self._participants = participants
        self._routers = routers
        self._state = state
        self._notifier = notifier
        # Told the room id after each new or resumed producer (recordings).
        self.listeners: list[Callable[[str], None]] = []

    async def produce(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        participant = self._participants.get(sid)
        transport_id = payload["transportId"]
        if participant.own_transport(transport_id) != "send":
            raise ApiError(ErrorCode.VALIDATION_ERROR, "produce needs a send transport")
        source = payload["appData"]["source"]
        replaces = payload.get("replaces")
        if replaces is not None:
            participant.own_producer(replaces)
            if participant.producers[replaces] != source:
                raise ApiError(ErrorCode.VALIDATION_ERROR, "replaces a producer of another source")
        # One producer per source; two while the participant moves to a new send
        # transport (the old one's is closed once the new one carries media).
        sending = sum(1 for d in participant.transports.values() if d == "send")
        same = [pid for pid, src in participant.producers.items() if src == source]
        if len([pid for pid in same if pid != replaces]) >= min(sending, 2):
            raise ApiError(ErrorCode.CONFLICT, f"already producing {source}")
        room, client = await self._routers.of(participant)
        result = await self._routers.create_owned(
            client,
            "produce",
            {
                "transportId": transport_id,
                "kind": payload["kind"],
                "rtpParameters": payload["rtpParameters"],
                "paused": payload["paused"],
                "appData": {"peerId": participant.participant_id, "source": source},
            },
            "produce",
            id_key="producerId",
            close_method="closeProducer",
            still_joined=lambda: self._participants.is_current(participant),
        )
        producer_id = result["producerId"]
        self._participants.add_producer(participant, producer_id, source, payload["kind"])
        participant.set_paused(producer_id, payload["paused"])
        record = ProducerRecord(
            producerId=producer_id,
            peerId=participant.participant_id,
            kind=payload["kind"],
            source=source,
            paused=payload["paused"],
        )
        await self._state.add_producer(room.roomId, record)
        # From the waiting room, it sends for its own checks only: the room is told
        # when the participant is let in (waiting_room.py).
        if participant.participant_id not in await self._state.waiting_ids(room.roomId):
            await self._notifier.to_room(
                room.roomId, "newProducer", producer_payload(record), skip_sid=sid
            )
            for listener in self.listeners:
                listener(room.roomId)
        if replaces is not None and replaces in participant.producers:
            await self.close(sid, replaces)  # the client closes its own copy
        log.info(
            "producer_created",
            room_id=room.roomId,
            participant_id=participant.participant_id,
            kind=record.kind,
            source=source,
        )
        return {"id": producer_id}

    async def set_paused(self, sid: str, producer_id: str, paused: bool) -> dict[str, Any]:
        participant = self._participants.get(sid)
        participant.own_producer(producer_id)
        room, _ = await self._routers.call(
            participant,
            "pauseProducer" if paused else "resumeProducer",
            {"producerId": producer_id},
            "pause producer" if paused else "resume producer",
        )
        participant.set_paused(producer_id, paused)
        await self._state.set_producer_paused(
            room.roomId, participant.participant_id, producer_id, paused
        )
        event = "producerPaused" if paused else "producerResumed"
        await self._notifier.to_room(
            room.roomId,
            event,
            {"peerId": participant.participant_id, "producerId": producer_id},
            skip_sid=sid,
        )
        if not paused:  # a camera turned on may be new to a recording
            for listener in self.listeners:
                listener(room.roomId)
        return {"paused": paused}

    async def close(self, sid: str, producer_id: str) -> dict[str, Any]:
        participant = self._participants.get(sid)
        participant.own_producer(producer_id)
        room, _ = await self._routers.call(
            participant, "closeProducer", {"producerId": producer_id}, "close producer"
        )
        self._participants.remove_producer(participant, producer_id)
        await self._state.remove_producer(room.roomId, participant.participant_id, producer_id)
        await self._notifier.to_room(
            room.roomId,
            "producerClosed",
            {"peerId": participant.participant_id, "producerId": producer_id},
            skip_sid=sid,
        )
        return {"closed": True}
