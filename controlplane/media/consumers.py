"""Consumers: what a participant receives.  The server decides: every producer of
the other participants of its room (or the one asked for, if it is one of those),
created paused on its newest receive transport (unless already consumed there);
the client resumes them."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.room_state import ConsumerRecord, ProducerRecord, RoomRecord, RoomState
from controlplane.media.routers import RoomRouters
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.sfu_client import SfuClient, SfuError, SfuRequestError
from schemas.errors import ApiError, ErrorCode


class Consumers:
    def __init__(
        self, participants: LocalParticipants, routers: RoomRouters, state: RoomState
    ) -> None:
        self._participants = participants
        self._routers = routers
        self._state = state

    async def consume(
        self, sid: str, rtp_capabilities: dict[str, Any], producer_id: str | None
    ) -> dict[str, Any]:
        participant = self._participants.get(sid)
        recv = [tid for tid, direction in participant.transports.items() if direction == "recv"]
        if not recv:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "create a receive transport first")
        transport_id = recv[-1]
        if participant.participant_id in await self._state.waiting_ids(participant.room_id):
            raise ApiError(
                ErrorCode.NOT_ADMITTED, "you are in the waiting room: a clinician will let you in"
            )
        room, client = await self._routers.of(participant)
        candidates = [
            p
            for p in await self._state.producers_in_room(room.roomId)
            if p.peerId != participant.participant_id
        ]
        if producer_id is not None:
            candidates = [p for p in candidates if p.producerId == producer_id]
            if not candidates:
                raise ApiError(ErrorCode.NOT_FOUND, "producer not found in this consultation")
        # Consumed on this transport already (one made before a move to new
        # transports does not count; one of unknown transport does).
        already = {
            producer
            for consumer, producer in participant.consumers.items()
            if participant.consumer_transports.get(consumer) in (transport_id, "", None)
        }
        # Video first: a client attaches consumers in the answer's order, and its
        # first one connects the transport; the video's key frame is asked for once
        # the transport is connected and the consumer resumed, so the sooner the
        # video is resumed, the sooner its first frame.
        wanted = sorted(
            (p for p in candidates if p.producerId not in already), key=lambda p: p.kind != "video"
        )
        # One SFU request each, all at once: a subscriber's audio and video are
        # made together (the order of the answer is the order above).
        outcomes = await asyncio.gather(
            *(
                self._consume_one(participant, room, client, transport_id, p, rtp_capabilities)
                for p in wanted
            ),
            return_exceptions=True,
        )
        consumers: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for producer, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, SfuRequestError) and producer_id is None:
                # The producer closed meanwhile, or this client cannot decode it.
                skipped.append({"producerId": producer.producerId, "reason": outcome.error_type})
            elif isinstance(outcome, SfuError):
                raise sfu_api_error(outcome, "consume") from outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                consumers.append(outcome)
        return {"consumers": consumers, "skipped": skipped}

    async def _consume_one(
        self,
        participant: Participant,
        room: RoomRecord,
        client: SfuClient,
        transport_id: str,
        producer: ProducerRecord,
        rtp_capabilities: dict[str, Any],
    ) -> dict[str, Any]:
        created = await client.request(
            "consume",
            {
                "transportId": transport_id,
                "producerId": producer.producerId,
                "rtpCapabilities": rtp_capabilities,
                "appData": {"peerId": participant.participant_id, "source": producer.source},
            },
        )
        consumer_id = created["consumerId"]
        await self._routers.close_if_left(
            client,
            "closeConsumer",
            {"consumerId": consumer_id},
            lambda: self._participants.is_current(participant),
        )
        layered = created["type"] == "simulcast"
        self._participants.add_consumer(
            participant,
            consumer_id,
            producer.producerId,
            created["kind"],
            transport_id,
            layered=layered,
        )
        participant.set_paused(consumer_id, True)
        await self._state.add_consumer(
            room.roomId,
            ConsumerRecord(
                consumerId=consumer_id,
                peerId=participant.participant_id,
                producerId=producer.producerId,
                kind=created["kind"],
                paused=True,
                transportId=transport_id,
                layered=layered,
            ),
        )
        return {
            "id": consumer_id,
            "producerId": producer.producerId,
            "peerId": producer.peerId,
            "kind": created["kind"],
            "source": producer.source,
            "rtpParameters": created["rtpParameters"],
            "type": created["type"],
            "producerPaused": created["producerPaused"],
        }

    async def set_paused(self, sid: str, consumer_id: str, paused: bool) -> dict[str, Any]:
        participant = self._participants.get(sid)
        participant.own_consumer(consumer_id)
        room, _ = await self._routers.call(
            participant,
            "pauseConsumer" if paused else "resumeConsumer",
            {"consumerId": consumer_id},
            "pause consumer" if paused else "resume consumer",
        )
        participant.set_paused(consumer_id, paused)
        await self._state.set_consumer_paused(
            room.roomId, participant.participant_id, consumer_id, paused
        )
        return {"paused": paused}
