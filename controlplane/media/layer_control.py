"""Applies layers.py: keeps each subscriber's tile sizes (``reportTileSizes``) and
the room's active speaker, and sets each simulcast consumer's ceiling and priority
on the SFU when they change.  Tells a subscriber when the layer it actually
receives changes (``consumerLayersChanged``), and holds the layers above off for a
while when the SFU moved it below its ceiling (layers.Hold)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from controlplane.media.layers import Choice, choose, held_after_drop, layer_heights
from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.ports import Notifier
from controlplane.media.profiles import profile_for
from controlplane.media.room_state import RoomState
from controlplane.media.routers import RoomRouters
from controlplane.placement.sfu_client import SfuError
from schemas.errors import ApiError

log = structlog.get_logger(__name__)


class LayerControl:
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
        # Room id -> the producers of its active speaker.
        self._speaking: dict[str, set[str]] = {}
        self._lifts: set[asyncio.Task[None]] = set()

    async def report_tiles(self, sid: str, tiles: list[dict[str, Any]]) -> dict[str, Any]:
        """The page's tiles: ``{consumerId, width, height}`` in device pixels (0: not
        shown).  Ids that are not the participant's own consumers are ignored."""
        participant = self._participants.get(sid)
        known = 0
        for tile in tiles:
            consumer_id = tile["consumerId"]
            if consumer_id in participant.consumers:
                participant.layers.tile_heights[consumer_id] = int(tile["height"])
                known += 1
        chosen = await self.apply(participant)
        return {
            "tiles": known,
            "preferredLayers": {
                cid: {"spatialLayer": choice.spatial_layer, "priority": choice.priority}
                for cid, choice in chosen.items()
            },
        }

    async def speaker(self, room_id: str, peer_id: str | None) -> None:
        """The room's active speaker changed: its camera goes first."""
        local = self._participants.in_room(room_id)
        if not local:
            self._speaking.pop(room_id, None)
            return
        producers = (
            {p.producerId for p in await self._state.producers_of(room_id, peer_id)}
            if peer_id
            else set()
        )
        if producers == self._speaking.get(room_id, set()):
            return
        self._speaking[room_id] = producers
        for participant in local:
            await self.apply(participant)

    async def departed(self, room_id: str, _participant_id: str) -> None:
        if not self._participants.in_room(room_id):
            self._speaking.pop(room_id, None)

    async def layers_changed(self, consumer_id: str, layers: dict[str, Any] | None) -> None:
        """What a subscriber now receives of a simulcast consumer (None: nothing)."""
        owner = self._participants.consumer_owner(consumer_id)
        if owner is None:
            return
        received = layers.get("spatialLayer") if layers else None
        state = owner.layers
        before = state.received.get(consumer_id)
        state.received[consumer_id] = received
        chosen = state.chosen.get(consumer_id)
        below_ceiling = chosen is not None and (received is None or received < chosen.spatial_layer)
        if before is not None and (received is None or received < before) and below_ceiling:
            hold = held_after_drop(state.holds.get(consumer_id), received, time.monotonic())
            state.holds[consumer_id] = hold
            log.info("simulcast_layer_held", ceiling=hold.ceiling, seconds=hold.span)
            self._lift_later(owner, hold.span)
            await self.apply(owner)
        await self._notifier.to_peer(
            owner.sid,
            "consumerLayersChanged",
            {
                "consumerId": consumer_id,
                "producerId": owner.consumers.get(consumer_id),
                "spatialLayer": layers.get("spatialLayer") if layers else None,
                "temporalLayer": layers.get("temporalLayer") if layers else None,
            },
        )

    def _lift_later(self, participant: Participant, seconds: float) -> None:
        async def lift() -> None:
            await asyncio.sleep(seconds + 0.05)
            if self._participants.find(participant.sid) is participant:
                await self.apply(participant)

        task = asyncio.create_task(lift())
        self._lifts.add(task)
        task.add_done_callback(self._lifts.discard)

    async def close(self) -> None:
        for task in list(self._lifts):
            task.cancel()

    async def apply(self, participant: Participant) -> dict[str, Choice]:
        """Choose for each of the participant's simulcast consumers and set on the
        SFU what changed; returns every choice."""
        state = participant.layers
        async with state.lock:
            heights = layer_heights(profile_for(participant.call_type))
            speaking = self._speaking.get(participant.room_id, set())
            now = time.monotonic()
            chosen: dict[str, Choice] = {}
            for consumer_id, producer_id in list(participant.consumers.items()):
                if consumer_id not in participant.layered:
                    continue
                choice = choose(
                    heights,
                    state.tile_heights.get(consumer_id),
                    producer_id in speaking,
                    state.ceiling_held(consumer_id, now),
                )
                chosen[consumer_id] = choice
                if state.chosen.get(consumer_id) == choice:
                    continue
                try:
                    await self._routers.call(
                        participant,
                        "setConsumerLayers",
                        {
                            "consumerId": consumer_id,
                            "spatialLayer": choice.spatial_layer,
                            "priority": choice.priority,
                        },
                        "set layers",
                    )
                except (ApiError, SfuError):
                    continue  # closed meanwhile: the next decision leaves it out
                state.chosen[consumer_id] = choice
            return chosen
