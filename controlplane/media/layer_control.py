"""Applies layers.py: keeps each subscriber's tile sizes (``reportTileSizes``), the
SFU's bandwidth estimate towards it (``transport.bwe``) and the room's active
speaker, and sets each simulcast consumer's ceiling on the SFU when it changes.
Tells a subscriber when the layers it actually receives change
(``consumerLayersChanged``)."""

from __future__ import annotations

from typing import Any

import structlog

from controlplane.media.layers import AUDIO_ALLOWANCE, Tile, choose, profile_layers
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
        preferred = await self.apply(participant)
        return {
            "tiles": known,
            "preferredLayers": {cid: {"spatialLayer": layer} for cid, layer in preferred.items()},
        }

    async def bandwidth(self, transport_id: str, bitrate: float) -> None:
        """The SFU's estimate of what it can send over a receive transport."""
        sid = self._participants.sid_of_transport(transport_id)
        participant = self._participants.find(sid) if sid else None
        if participant is None or participant.transports.get(transport_id) != "recv":
            return
        participant.layers.bandwidth = bitrate
        await self.apply(participant)

    async def speaker(self, room_id: str, peer_id: str | None) -> None:
        """The room's active speaker changed: its camera is lowered last."""
        producers = (
            {p.producerId for p in await self._state.producers_of(room_id, peer_id)}
            if peer_id
            else set()
        )
        local = self._participants.in_room(room_id)
        if not local or producers == self._speaking.get(room_id, set()):
            if not local:
                self._speaking.pop(room_id, None)
            return
        self._speaking[room_id] = producers
        for participant in local:
            if participant.layers.bandwidth is not None:
                await self.apply(participant)

    async def departed(self, room_id: str, _participant_id: str) -> None:
        if not self._participants.in_room(room_id):
            self._speaking.pop(room_id, None)

    async def layers_changed(self, consumer_id: str, layers: dict[str, Any] | None) -> None:
        """What a subscriber now receives of a simulcast consumer (None: nothing)."""
        owner = self._participants.consumer_owner(consumer_id)
        if owner is None:
            return
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

    async def apply(self, participant: Participant) -> dict[str, int]:
        """Choose the ceilings of the participant's simulcast consumers and set the
        ones that changed; returns all of them."""
        state = participant.layers
        async with state.lock:
            layered = [cid for cid in participant.consumers if cid in participant.layered]
            if not layered:
                return {}
            profile = profile_for(participant.call_type)
            speaking = self._speaking.get(participant.room_id, set())
            tiles = [
                Tile(cid, state.tile_heights.get(cid), participant.consumers[cid] in speaking)
                for cid in layered
            ]
            budget = None
            if state.bandwidth is not None:
                others = [cid for cid in participant.consumers if cid not in participant.layered]
                audio = sum(1 for cid in others if participant.consumer_kinds.get(cid) == "audio")
                video = len(others) - audio  # screen shares: one layer each
                budget = state.bandwidth - audio * AUDIO_ALLOWANCE - video * profile.videoBitrate
            chosen = choose(profile_layers(profile), tiles, budget, state.preferred)
            for consumer_id, layer in chosen.items():
                if state.preferred.get(consumer_id) == layer:
                    continue
                try:
                    await self._routers.call(
                        participant,
                        "setConsumerPreferredLayers",
                        {"consumerId": consumer_id, "spatialLayer": layer},
                        "set layers",
                    )
                except (ApiError, SfuError):
                    continue  # closed meanwhile: the next decision leaves it out
                state.preferred[consumer_id] = layer
            log.debug(
                "layers_chosen",
                room_id=participant.room_id,
                participant_id=participant.participant_id,
                layers=chosen,
                bandwidth=state.bandwidth,
            )
            return chosen
