"""WebRTC transports of a participant: create (at most MAX_TRANSPORTS_PER_PEER:
two in use, two more while moving to new ones), connect (DTLS), restart ICE,
close.  Every ack that sets up ICE carries fresh TURN
credentials (``iceServers``)."""

from __future__ import annotations

from typing import Any

from controlplane.media.ice_servers import IceServers
from controlplane.media.participants import LocalParticipants
from controlplane.media.profiles import profile_for
from controlplane.media.room_state import RoomState
from controlplane.media.routers import RoomRouters
from schemas.errors import ApiError, ErrorCode

MAX_TRANSPORTS_PER_PEER = 4


class Transports:
    def __init__(
        self,
        participants: LocalParticipants,
        routers: RoomRouters,
        state: RoomState,
        ice_servers: IceServers,
    ) -> None:
        self._participants = participants
        self._routers = routers
        self._state = state
        self._ice_servers = ice_servers

    async def create(self, sid: str, direction: str, force_tcp: bool) -> dict[str, Any]:
        participant = self._participants.get(sid)
        if len(participant.transports) >= MAX_TRANSPORTS_PER_PEER:
            raise ApiError(ErrorCode.CONFLICT, "too many transports for this participant")
        room, client = await self._routers.of(participant)
        profile = profile_for(room.callType)
        params: dict[str, Any] = {
            "routerId": room.routerId,
            "enableUdp": not force_tcp,
            "enableTcp": True,
            "appData": {
                "roomId": room.roomId,
                "peerId": participant.participant_id,
                "direction": direction,
            },
        }
        if direction == "send":
            params["maxIncomingBitrate"] = profile.max_incoming_bitrate
        created = await self._routers.create_owned(
            client,
            "createWebRtcTransport",
            params,
            "create transport",
            id_key="transportId",
            close_method="closeTransport",
            still_joined=lambda: self._participants.is_current(participant),
        )
        transport_id = created["transportId"]
        self._participants.add_transport(participant, transport_id, direction)
        await self._state.add_transport(
            room.roomId, participant.participant_id, transport_id, direction
        )
        return {
            "id": transport_id,
            "iceParameters": created["iceParameters"],
            "iceCandidates": created["iceCandidates"],
            "dtlsParameters": created["dtlsParameters"],
            "sctpParameters": created["sctpParameters"],
            "iceServers": self._ice_servers.for_participant(participant.participant_id),
        }

    async def connect(self, sid: str, transport_id: str, dtls: dict[str, Any]) -> dict[str, Any]:
        participant = self._participants.get(sid)
        participant.own_transport(transport_id)
        await self._routers.call(
            participant,
            "connectWebRtcTransport",
            {"transportId": transport_id, "dtlsParameters": dtls},
            "connect transport",
        )
        return {"connected": True}

    async def close(self, sid: str, transport_id: str) -> dict[str, Any]:
        """Close one of the participant's transports (after moving to new ones): the
        SFU closes what was on it, and its notifications tell the others."""
        participant = self._participants.get(sid)
        participant.own_transport(transport_id)
        room, _ = await self._routers.call(
            participant, "closeTransport", {"transportId": transport_id}, "close transport"
        )
        self._participants.remove_transport(participant, transport_id)
        await self._state.remove_transport(room.roomId, participant.participant_id, transport_id)
        return {"closed": True}

    async def restart_ice(self, sid: str, transport_id: str) -> dict[str, Any]:
        participant = self._participants.get(sid)
        participant.own_transport(transport_id)
        _, result = await self._routers.call(
            participant, "restartIce", {"transportId": transport_id}, "restart ICE"
        )
        return {
            "iceParameters": result["iceParameters"],
            "iceServers": self._ice_servers.for_participant(participant.participant_id),
        }
