"""Resume: a participant whose connection drops keeps its transports, producers
and consumers on the SFU for the resume window; a new connection that presents
its resume credential (with a room token of the same participant) takes that
state over, on this instance or any other, since everything needed lives in
Redis.  The others see ``peerReconnecting`` and ``peerReconnected``, never
``peerLeft``, inside the window.

Also here: connections that an instance drops on purpose (graceful shutdown) and
participants of an instance that died, which both become "disconnected".
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from controlplane.auth import RoomClaims
from controlplane.media.ice_servers import IceServers
from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.ports import Notifier
from controlplane.media.presence import Presence
from controlplane.media.profiles import profile_for
from controlplane.media.resume_credentials import matches, new_credential
from controlplane.media.room_state import RoomRecord, RoomState, producer_payload
from controlplane.media.waiting_room import WaitingRoom
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class Resumption:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        presence: Presence,
        notifier: Notifier,
        ice_servers: IceServers,
        waiting_room: WaitingRoom,
    ) -> None:
        self._participants = participants
        self._state = state
        self._presence = presence
        self._notifier = notifier
        self._ice_servers = ice_servers
        self._waiting_room = waiting_room

    async def suspend(self, sid: str, reason: str) -> bool:
        """The connection ``sid`` dropped: keep its participant's media for the window."""
        participant = self._participants.remove(sid)
        if participant is None:
            return False
        return await self._detach(participant.room_id, participant.participant_id, sid, reason)

    async def _detach(self, room_id: str, participant_id: str, sid: str, reason: str) -> bool:
        now = time.time()
        async with self._state.room_lock(room_id):
            record = await self._state.get_participant(room_id, participant_id)
            if record is None or record.sid != sid or not sid:
                return False  # left, replaced, or already resumed on a new connection
            window = record.resumeWindow or self._presence.window
            await self._state.update_participant(
                room_id, participant_id, {"sid": "", "disconnectedAt": now}
            )
            await self._presence.detach(room_id, participant_id, now + window)
        await self._notifier.to_room(
            room_id,
            "peerReconnecting",
            {"peerId": participant_id, "reason": reason, "resumeWindow": window},
        )
        log.info("peer_reconnecting", room_id=room_id, participant_id=participant_id, reason=reason)
        return True

    async def take_over(self, instance_id: str) -> int:
        """``instance_id`` stopped beating: its participants become disconnected (they
        may resume anywhere; the window starts now)."""
        count = 0
        for room_id, participant_id in await self._presence.served_by(instance_id):
            record = await self._state.get_participant(room_id, participant_id)
            if record is not None and record.instance == instance_id and record.sid:
                count += await self._detach(room_id, participant_id, record.sid, "server_lost")
        await self._presence.bury(instance_id)
        log.warning("instance_taken_over", instance_id=instance_id, participants=count)
        return count

    async def drain(self) -> list[str]:
        """Graceful shutdown: every local participant becomes disconnected with its
        media untouched; returns their connections (to be told to reconnect)."""
        sids = []
        for participant in self._participants.all():
            if await self.suspend(participant.sid, "server_restart"):
                sids.append(participant.sid)
        return sids

    async def resume(
        self, sid: str, claims: RoomClaims, room_id: str, credential: str
    ) -> dict[str, Any]:
        if room_id != claims.room_id:
            raise ApiError(
                ErrorCode.FORBIDDEN, "this token does not grant access to that consultation"
            )
        if self._participants.find(sid) is not None:
            raise ApiError(ErrorCode.ALREADY_JOINED, "already joined")
        participant_id = claims.participant_id
        async with self._state.room_lock(room_id):
            room = await self._state.get_room(room_id)
            record = await self._state.get_participant(room_id, participant_id)
            if room is None or record is None:
                raise ApiError(ErrorCode.RESUME_EXPIRED, "nothing to resume: join again")
            if not matches(credential, record.epoch, record.resumeHash):
                log.warning("resume_refused_bad_credential", room_id=room_id)
                raise ApiError(ErrorCode.FORBIDDEN, "the resume credential is not valid")
            if (
                record.disconnectedAt
                and time.time() > record.disconnectedAt + self._presence.window
            ):
                raise ApiError(ErrorCode.RESUME_EXPIRED, "the resume window has passed: join again")
            epoch = record.epoch + 1
            resume_token, resume_hash = new_credential(epoch)
            await self._state.update_participant(
                room_id,
                participant_id,
                {
                    "sid": sid,
                    "instance": self._presence.instance_id,
                    "epoch": epoch,
                    "resumeHash": resume_hash,
                    "disconnectedAt": 0.0,
                    "resumeWindow": self._presence.window,
                },
            )
            if record.instance != self._presence.instance_id:
                await self._presence.forget(room_id, participant_id, record.instance)
            await self._presence.attach(room_id, participant_id)
            # A waiting participant who comes back still waits, seeing nobody.
            waiting = await self._waiting_room.is_waiting(room_id, participant_id)
            summary = await self._adopt(
                sid,
                claims,
                room,
                epoch=epoch,
                resume_hash=resume_hash,
                joined_at=record.joinedAt,
                waiting=waiting,
            )
        if record.sid and record.sid != sid:
            # The old connection still looked alive (the client noticed first).
            self._participants.remove(record.sid)
            await self._notifier.leave_room(record.sid, room_id)
            await self._notifier.disconnect(record.sid)
        if not waiting:
            await self._notifier.enter_room(sid, room_id)
            await self._notifier.to_room(
                room_id, "peerReconnected", {"peerId": participant_id}, skip_sid=sid
            )
        admission = await self._waiting_room.current(room_id, participant_id)
        if admission is not None:
            summary.update(await self._waiting_room.joined(sid, room_id, admission))
        log.info("peer_resumed", room_id=room_id, participant_id=participant_id, epoch=epoch)
        present = len(await self._state.participant_ids(room_id))
        return {
            "roomId": room_id,
            "peerId": participant_id,
            "role": claims.role,
            "displayName": claims.display_name,
            "callType": room.callType,
            "mediaProfile": profile_for(room.callType).to_client(present),
            "resumeToken": resume_token,
            "resumeWindow": self._presence.window,
            # Fresh TURN credentials: the transports' earlier ones may be near expiry.
            "iceServers": self._ice_servers.for_participant(participant_id),
            **summary,
        }

    async def _adopt(
        self,
        sid: str,
        claims: RoomClaims,
        room: RoomRecord,
        *,
        epoch: int,
        resume_hash: str,
        joined_at: float,
        waiting: bool,
    ) -> dict[str, Any]:
        """Rebuild the participant on this instance from Redis, and summarise what
        it may have missed: who is there, what they send, what it still receives."""
        room_id, participant_id = room.roomId, claims.participant_id
        participant = Participant(
            sid=sid,
            claims=claims,
            room=room,
            first_media_seen=True,
            joined_at_wall=joined_at,
            epoch=epoch,
            resume_hash=resume_hash,
        )
        self._participants.add(participant)
        transports = await self._state.transports(room_id, participant_id)
        for transport_id, direction in transports.items():
            self._participants.add_transport(participant, transport_id, direction)
        own = await self._state.producers_of(room_id, participant_id)
        for mine in own:
            self._participants.add_producer(participant, mine.producerId, mine.source, mine.kind)
            participant.set_paused(mine.producerId, mine.paused)
        hidden = await self._state.waiting_ids(room_id) | {participant_id}
        others = [] if waiting else await self._state.participants(room_id)
        others = [p for p in others if p.peerId not in hidden]
        producers = [] if waiting else await self._state.producers_in_room(room_id)
        producers = [p for p in producers if p.peerId != participant_id]
        live = {p.producerId: p for p in producers}
        consumers = []
        for consumer in await self._state.consumers_of(room_id, participant_id):
            producer = live.get(consumer.producerId)
            if producer is None:
                # Its producer closed while we were away: so did the consumer.
                await self._state.remove_consumer(room_id, participant_id, consumer.consumerId)
                continue
            self._participants.add_consumer(
                participant,
                consumer.consumerId,
                consumer.producerId,
                consumer.kind,
                consumer.transportId,
                layered=consumer.layered,
            )
            participant.set_paused(consumer.consumerId, consumer.paused)
            consumers.append(
                {
                    "id": consumer.consumerId,
                    "producerId": consumer.producerId,
                    "peerId": producer.peerId,
                    "kind": consumer.kind,
                    "source": producer.source,
                    "paused": consumer.paused,
                    "producerPaused": producer.paused,
                }
            )
        return {
            "peers": [
                {
                    "peerId": p.peerId,
                    "role": p.role,
                    "displayName": p.displayName,
                    "reconnecting": not p.sid,
                }
                for p in others
            ],
            "producers": [producer_payload(p) for p in producers],
            "transports": [{"id": t, "direction": d} for t, d in transports.items()],
            "ownProducers": [
                {"id": p.producerId, "kind": p.kind, "source": p.source, "paused": p.paused}
                for p in own
            ],
            "consumers": consumers,
        }
