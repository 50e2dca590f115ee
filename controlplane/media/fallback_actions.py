"""The fallback ladder's actions on one participant's media (decided by the
telemetry fallback policy): audio only and back, a lower send cap and back, and
advice to restart ICE through a TURN relay."""

from __future__ import annotations

import structlog

from controlplane.media.ice_servers import IceServers
from controlplane.media.participants import Participant
from controlplane.media.ports import Notifier
from controlplane.media.profiles import profile_for
from controlplane.media.room_state import RoomState
from controlplane.media.routers import RoomRouters
from controlplane.placement.sfu_client import SfuError

log = structlog.get_logger(__name__)


class MediaFallback:
    def __init__(
        self,
        routers: RoomRouters,
        state: RoomState,
        notifier: Notifier,
        ice_servers: IceServers,
    ) -> None:
        self._routers = routers
        self._state = state
        self._notifier = notifier
        self._ice_servers = ice_servers

    @property
    def relay_available(self) -> bool:
        return self._ice_servers.config is not None

    async def set_video_received(self, participant: Participant, on: bool, reason: str) -> None:
        """Audio only (video consumers paused at the SFU) or back; both sides are told."""
        room, client = await self._routers.of(participant)
        video = [
            c
            for c, kind in participant.consumer_kinds.items()
            if kind == "video" and c in participant.consumers
        ]
        for consumer_id in video:
            try:
                await client.request(
                    "resumeConsumer" if on else "pauseConsumer", {"consumerId": consumer_id}
                )
                await self._state.set_consumer_paused(
                    room.roomId, participant.participant_id, consumer_id, not on
                )
            except SfuError as exc:
                log.warning("fallback_consumer_failed", room_id=room.roomId, error=str(exc))
        mode = "normal" if on else "audio_only"
        await self._notifier.to_peer(
            participant.sid, "mediaFallback", {"mode": mode, "reason": reason}
        )
        await self._notifier.to_room(
            room.roomId,
            "peerMediaFallback",
            {"peerId": participant.participant_id, "mode": mode, "reason": reason},
            skip_sid=participant.sid,
        )
        log.info(
            "fallback_video",
            room_id=room.roomId,
            participant_id=participant.participant_id,
            mode=mode,
        )

    async def set_send_cap(self, participant: Participant, reduced: bool, reason: str) -> None:
        """Lower (or restore) what a participant may send, when its uplink loses packets."""
        room, client = await self._routers.of(participant)
        profile = profile_for(participant.call_type)
        bitrate = profile.max_incoming_bitrate // 3 if reduced else profile.max_incoming_bitrate
        for transport_id, direction in list(participant.transports.items()):
            if direction != "send":
                continue
            try:
                await client.request(
                    "setMaxIncomingBitrate", {"transportId": transport_id, "bitrate": bitrate}
                )
            except SfuError as exc:
                log.warning("fallback_bitrate_failed", room_id=room.roomId, error=str(exc))
        await self._notifier.to_peer(
            participant.sid,
            "mediaFallback",
            {
                "mode": "reduced_bitrate" if reduced else "full_bitrate",
                "reason": reason,
                "maxBitrate": bitrate,
            },
        )

    async def advise_relay(self, participant: Participant, reason: str) -> None:
        """The client moves its media onto the TURN relay only (credentials included)."""
        ice_servers = self._ice_servers.for_participant(participant.participant_id)
        await self._notifier.to_peer(
            participant.sid, "iceRelayAdvised", {"reason": reason, "iceServers": ice_servers}
        )
        log.info("fallback_relay_advised", room_id=participant.room_id)
