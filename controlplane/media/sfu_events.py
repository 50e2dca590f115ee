"""What SFU nodes push (consumer/producer closed, transport state, producer
pause, worker and router deaths) and a lost node connection, turned into
state changes and events for the participants concerned.  Implements the
placement registry's ``NodeListener``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from controlplane.media.participants import LocalParticipants
from controlplane.media.ports import Notifier
from controlplane.media.room_failures import RoomFailures
from controlplane.media.room_state import RoomState

log = structlog.get_logger(__name__)


class SfuEvents:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        notifier: Notifier,
        failures: RoomFailures,
    ) -> None:
        self._participants = participants
        self._state = state
        self._notifier = notifier
        self._failures = failures
        # Told (recording id, reason) when a node's recorder fails, what a node
        # completed as it shut down, and the node id when a node is lost (its
        # recordings died with it).
        self.recording_failed: list[Callable[[str, str], Awaitable[None]]] = []
        self.recording_stopped: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.node_lost: list[Callable[[str], Awaitable[None]]] = []
        # Simulcast (layer_control.py): the layers a consumer now sends, the room's
        # active speaker.
        self.layers_changed: list[Callable[[str, dict[str, Any] | None], Awaitable[None]]] = []
        self.speaker_changed: list[Callable[[str, str | None], Awaitable[None]]] = []
        # mediasoup's pushed consumer scores (call-quality sampling wakes on low ones).
        self.score_changed: list[Callable[[str, dict[str, Any]], Awaitable[None]]] = []

    async def on_notification(self, node_id: str, event: str, data: dict[str, Any]) -> None:
        if event == "consumer.closed":
            await self._consumer_closed(data)
        elif event in ("transport.icestatechange", "transport.dtlsstatechange"):
            await self._transport_state(data)
        elif event == "producer.closed":
            await self._producer_closed(data)
        elif event == "router.workerclose":
            await self._router_died(str(data.get("routerId")))
        elif event == "recording.failed":
            for listener in self.recording_failed:
                await listener(str(data.get("recordingId")), str(data.get("reason")))
        elif event == "recording.stopped":
            for stopped in self.recording_stopped:
                await stopped(data)
        elif event == "router.activespeaker":
            await self._active_speaker(str(data.get("routerId")), data.get("producerId"))
        elif event == "consumer.layerschange":
            layers = data.get("layers")
            for changed in self.layers_changed:
                await changed(
                    str(data.get("consumerId")), layers if isinstance(layers, dict) else None
                )
        elif event == "consumer.score":
            score = data.get("score")
            for scored in self.score_changed:
                await scored(str(data.get("consumerId")), score if isinstance(score, dict) else {})
        elif event == "worker.died":
            log.error("sfu_worker_died", node_id=node_id, worker_index=data.get("workerIndex"))
        elif event in ("consumer.producerpause", "consumer.producerresume"):
            owner = self._participants.consumer_owner(str(data.get("consumerId")))
            if owner is not None:
                name = "consumerPaused" if event.endswith("pause") else "consumerResumed"
                await self._notifier.to_peer(
                    owner.sid,
                    name,
                    {"consumerId": data.get("consumerId"), "producerId": data.get("producerId")},
                )

    async def on_node_lost(self, node_id: str) -> None:
        """The RPC connection to an SFU node dropped: its rooms lost their media."""
        for listener in self.node_lost:
            try:
                await listener(node_id)
            except Exception:
                log.exception("node_lost_listener_failed", node_id=node_id)
        room_ids = set(await self._state.rooms_on_node(node_id))
        room_ids.update(p.room_id for p in self._participants.all() if p.node_id == node_id)
        for room_id in sorted(room_ids):
            await self._failures.move_room(room_id, lambda node, _router: node == node_id)

    async def _active_speaker(self, router_id: str, producer_id: Any) -> None:
        """The room's loudest speaker changed: each instance tells its own
        participants in the call (so nobody hears it twice); a waiting participant
        is neither told nor shown speaking."""
        local = [p for p in self._participants.all() if p.router_id == router_id]
        if not local:
            return
        room_id = local[0].room_id
        waiting = await self._state.waiting_ids(room_id)
        speaker = (
            await self._state.producer_owner(room_id, str(producer_id)) if producer_id else None
        )
        if speaker in waiting:
            return
        news = {"peerId": speaker, "producerId": producer_id if speaker else None}
        for participant in local:
            if participant.participant_id not in waiting:
                await self._notifier.to_peer(participant.sid, "activeSpeaker", news)
        # Then the simulcast priorities (the notices do not wait for the SFU).
        for listener in self.speaker_changed:
            try:
                await listener(room_id, speaker)
            except Exception:
                log.exception("speaker_listener_failed", room_id=room_id)

    async def _router_died(self, router_id: str) -> None:
        room_ids = {p.room_id for p in self._participants.all() if p.router_id == router_id}
        room_id = await self._state.room_for_router(router_id)
        if room_id is not None:
            room_ids.add(room_id)
        for affected in sorted(room_ids):
            await self._failures.move_room(affected, lambda _node, router: router == router_id)

    async def _consumer_closed(self, data: dict[str, Any]) -> None:
        consumer_id = str(data.get("consumerId"))
        released = self._participants.release_consumer(consumer_id)
        if released is None:
            return
        participant, producer_id = released
        await self._state.remove_consumer(
            participant.room_id, participant.participant_id, consumer_id
        )
        await self._notifier.to_peer(
            participant.sid,
            "consumerClosed",
            {"consumerId": consumer_id, "producerId": producer_id},
        )

    async def _producer_closed(self, data: dict[str, Any]) -> None:
        producer_id = str(data.get("producerId"))
        participant = self._participants.release_producer(producer_id)
        if participant is None:
            return
        await self._state.remove_producer(
            participant.room_id, participant.participant_id, producer_id
        )
        await self._notifier.to_room(
            participant.room_id,
            "producerClosed",
            {"peerId": participant.participant_id, "producerId": producer_id},
        )

    async def _transport_state(self, data: dict[str, Any]) -> None:
        transport_id = str(data.get("transportId"))
        sid = self._participants.sid_of_transport(transport_id)
        if sid is None:
            return
        payload = {"transportId": transport_id}
        if "iceState" in data:
            payload["iceState"] = str(data["iceState"])
        if "dtlsState" in data:
            payload["dtlsState"] = str(data["dtlsState"])
        if data.get("dtlsState") == "failed" or data.get("iceState") == "disconnected":
            participant = self._participants.find(sid)
            log.warning(
                "transport_degraded",
                room_id=participant.room_id if participant else None,
                **payload,
            )
        await self._notifier.to_peer(sid, "transportStateChanged", payload)
