"""Room membership: join (through the join gate), leave, removal (a leave, or a
resume window that passed), replacing an older connection of the same
participant, and closing a room when its session ends.

Membership changes of one room are serialised across instances by the room
lock in Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from controlplane.auth import RoomClaims
from controlplane.media.admission import WAITING
from controlplane.media.participants import LocalParticipants, Participant, participant_record
from controlplane.media.ports import JoinGate, JoinPass, Notifier
from controlplane.media.presence import Presence
from controlplane.media.profiles import profile_for
from controlplane.media.resume_credentials import new_credential
from controlplane.media.room_state import (
    ParticipantRecord,
    ProducerRecord,
    RoomRecord,
    RoomState,
    producer_payload,
)
from controlplane.media.routers import RoomRouters
from controlplane.media.waiting_room import Arrival, WaitingRoom, waiting_group
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

# Told (room id, participant id) when a participant leaves, is removed or replaced.
DepartureListener = Callable[[str, str], Awaitable[None]]


async def announce_join(
    notifier: Notifier, sid: str, claims: RoomClaims, *, waiting: bool, simulcast: bool
) -> None:
    """A participant in the call enters the room's group and the others hear of
    it (a waiting one: nobody); ``simulcast``: the room just grew past two, so
    those already in send their cameras again, with layers."""
    room_id = claims.room_id
    if not waiting:
        await notifier.enter_room(sid, room_id)
        await notifier.to_room(
            room_id,
            "peerJoined",
            {
                "peerId": claims.participant_id,
                "role": claims.role,
                "displayName": claims.display_name,
            },
            skip_sid=sid,
        )
    if simulcast:
        for group in (room_id, waiting_group(room_id)):
            await notifier.to_room(group, "mediaProfileChanged", {"simulcast": True}, skip_sid=sid)


class Membership:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        routers: RoomRouters,
        notifier: Notifier,
        join_gate: JoinGate,
        presence: Presence,
        waiting_room: WaitingRoom,
        *,
        instance_id: str,
        max_peers_per_room: int,
    ) -> None:
        self._presence = presence
        self._participants = participants
        self._state = state
        self._routers = routers
        self._notifier = notifier
        self._join_gate = join_gate
        self._instance_id = instance_id
        self._max_peers_per_room = max_peers_per_room
        self.departure_listeners: list[DepartureListener] = []
        self.waiting_room = waiting_room

    async def join(self, sid: str, claims: RoomClaims, room_id: str) -> dict[str, Any]:
        if room_id != claims.room_id:
            log.warning("join_refused_other_consultation", participant_id=claims.participant_id)
            raise ApiError(
                ErrorCode.FORBIDDEN, "this token does not grant access to that consultation"
            )
        if self._participants.find(sid) is not None:
            raise ApiError(ErrorCode.ALREADY_JOINED, "already joined")
        if claims.expires_at <= time.time():
            raise ApiError(ErrorCode.SESSION_EXPIRED, "the room token has expired")
        # An active session naming this participant, or no entry.
        granted = await self._join_gate.authorize_join(claims)
        call_type = granted.call_type
        profile = profile_for(call_type)
        replaced: ParticipantRecord | None = None
        async with self._state.room_lock(room_id):
            room = await self._routers.ensure(room_id, call_type)
            # Fetched before anything is written, so a failure leaves no trace.
            rtp_capabilities = await self._routers.capabilities(room)
            participant_ids = await self._state.participant_ids(room_id)
            if claims.participant_id in participant_ids:
                replaced = await self._state.get_participant(room_id, claims.participant_id)
            elif len(participant_ids) >= self._max_peers_per_room:
                raise ApiError(ErrorCode.ROOM_FULL, "the consultation room is full")
            if replaced is not None:
                await self._evict(room, replaced)
            arrival = await self.waiting_room.arrive(room_id, claims, call_type, granted.session_id)
            admission = arrival.admission
            waiting = admission.state == WAITING
            resume_token, resume_hash = new_credential(1)
            participant = Participant(
                sid=sid,
                claims=claims,
                room=room,
                epoch=1,
                resume_hash=resume_hash,
            )
            await self._state.add_participant(
                room_id, participant_record(participant, self._instance_id, self._presence.window)
            )
            await self._presence.attach(room_id, claims.participant_id)
            self._participants.add(participant)
            # A waiting participant sees nobody, and nobody sees it (waiting_room.py).
            # The room as the newcomer sees it (room_reads.py: two round trips).
            others: list[ParticipantRecord] = []
            producers: list[ProducerRecord] = []
            recording: str | None = None
            if not waiting:
                view = await self._state.view(room_id)
                hidden = view.waiting | {claims.participant_id}
                others = [p for p in view.participants if p.peerId not in hidden]
                producers = [p for p in view.producers if p.peerId != claims.participant_id]
                recording = view.recording
            present = len(participant_ids) + (0 if replaced else 1)
            grew_past_two = (
                replaced is None
                and profile.uses_simulcast(present)
                and not profile.uses_simulcast(present - 1)
            )
            # Nobody hears of the join (nor sees it in the room: the lock is held),
            # and it is not answered, before its audit entries are stored; they
            # were committed while the room was prepared.
            refused = await self._audited(sid, room, claims.participant_id, granted, arrival)
        if refused is not None:
            await self._departed(room_id, claims.participant_id)
            raise ApiError(
                ErrorCode.SERVICE_UNAVAILABLE, "the join could not be recorded; retry"
            ) from refused
        await announce_join(self._notifier, sid, claims, waiting=waiting, simulcast=grew_past_two)
        admission_news = await self.waiting_room.joined(sid, room_id, admission)
        log.info(
            "peer_joined",
            room_id=room_id,
            participant_id=claims.participant_id,
            role=claims.role,
            replaced=replaced is not None,
        )
        return {
            "roomId": room_id,
            "peerId": claims.participant_id,
            "role": claims.role,
            "displayName": claims.display_name,
            "callType": call_type,
            "mediaProfile": profile.to_client(present),
            "routerRtpCapabilities": rtp_capabilities,
            "peers": [
                {"peerId": p.peerId, "role": p.role, "displayName": p.displayName} for p in others
            ],
            "producers": [producer_payload(p) for p in producers],
            # The consultation is being recorded (the page shows it): {recordingId} or null.
            "recording": {"recordingId": recording} if recording else None,
            "resumeToken": resume_token,
            "resumeWindow": self._presence.window,
            # The session's clock for the page (timer, time left before its maximum).
            "session": granted.session,
            **admission_news,
        }

    async def _audited(
        self, sid: str, room: RoomRecord, participant_id: str, granted: JoinPass, arrival: Arrival
    ) -> Exception | None:
        """Wait for the join's audit entries (the room lock is held).  If they
        cannot be stored, the join is undone in Redis (the room too, if it was
        made for it) and the error returned."""
        entries = [granted.stored] + ([arrival.stored] if arrival.stored is not None else [])
        try:
            await asyncio.gather(*entries)
            return None
        except Exception as exc:
            error = type(exc).__name__
            log.warning(
                "join_audit_failed", room_id=room.roomId, participant_id=participant_id, error=error
            )
            self._participants.remove(sid)
            try:
                remaining = await self._state.remove_participant(room.roomId, participant_id)
                await self._presence.forget(room.roomId, participant_id)
                if remaining == 0:
                    await self._routers.close(room)
            except Exception:
                log.exception("join_undo_failed", room_id=room.roomId)
            return exc

    async def router_rtp_capabilities(self, sid: str) -> dict[str, Any]:
        """A cheap event: answered from this instance's memory when it knows the
        router of the participant's room (as when it joined or resumed; a room made
        again on another router brings a rejoin, and a router's capabilities follow
        from the call type's codecs alone), else from Redis and the node."""
        participant = self._participants.get(sid)
        known = self._routers.known_capabilities(participant.router_id)
        if known is not None:
            return {"routerRtpCapabilities": known}
        room, _ = await self._routers.of(participant)
        return {"routerRtpCapabilities": await self._routers.capabilities(room)}

    async def _evict(self, room: RoomRecord, record: ParticipantRecord) -> None:
        """Remove an older connection of the same participant (a rejoin from a new socket)."""
        log.info("peer_replaced", room_id=room.roomId, participant_id=record.peerId)
        await self._routers.close_participant_media(room, record.peerId)
        await self._state.remove_participant(room.roomId, record.peerId)
        await self._presence.forget(room.roomId, record.peerId, record.instance)
        await self._departed(room.roomId, record.peerId)
        if not record.sid:
            return  # it was disconnected, waiting to resume
        self._participants.remove(record.sid)
        await self._notifier.to_peer(
            record.sid,
            "evicted",
            {"reason": "joined_elsewhere", "message": "you joined from another connection"},
        )
        await self._notifier.leave_room(record.sid, room.roomId)
        await self._notifier.disconnect(record.sid)

    async def leave(self, sid: str, reason: str = "left") -> dict[str, Any]:
        participant = self._participants.remove(sid)
        if participant is None:
            return {"left": False}
        await self._notifier.leave_room(sid, participant.room_id)
        await self.remove(participant.room_id, participant.participant_id, reason, sid=sid)
        return {"left": True}

    async def remove(self, room_id: str, participant_id: str, reason: str, *, sid: str) -> bool:
        """Remove a participant whose record still belongs to connection ``sid`` (``""``:
        one that is disconnected): close its media, tell the room, audit; the room
        goes when its last participant does.  False if it was not there (any more)."""
        closed_room = unseen = False
        producers: list[ProducerRecord] = []
        async with self._state.room_lock(room_id):
            current = await self._state.get_participant(room_id, participant_id)
            if current is None or current.sid != sid:
                return False  # gone, replaced by a newer connection, or resumed
            if not sid and time.time() < current.disconnectedAt + (
                current.resumeWindow or self._presence.window
            ):
                return False  # dropped again after a resume: a new window runs
            room = await self._state.get_room(room_id)
            # Nobody saw a waiting participant arrive: nobody hears it go.
            unseen = participant_id in await self._state.waiting_ids(room_id)
            if room is not None:
                producers = await self._state.producers_of(room_id, participant_id)
                await self._routers.close_participant_media(room, participant_id)
            remaining = await self._state.remove_participant(room_id, participant_id)
            if remaining == 0 and room is not None:
                await self._routers.close(room)
                closed_room = True
        await self._presence.forget(room_id, participant_id, current.instance)
        for producer in [] if unseen else producers:
            await self._notifier.to_room(
                room_id,
                "producerClosed",
                {"peerId": participant_id, "producerId": producer.producerId},
            )
        if not unseen:
            await self._notifier.to_room(
                room_id, "peerLeft", {"peerId": participant_id, "reason": reason}
            )
        log.info(
            "peer_left",
            room_id=room_id,
            participant_id=participant_id,
            reason=reason,
            room_closed=closed_room,
        )
        try:
            await self._join_gate.record_leave(room_id, participant_id, current.role, reason)
        except Exception:
            log.exception("leave_audit_failed", room_id=room_id)
        await self._departed(room_id, participant_id)
        return True

    async def _departed(self, room_id: str, participant_id: str) -> None:
        for listener in self.departure_listeners:
            try:
                await listener(room_id, participant_id)
            except Exception:
                log.exception("departure_listener_failed", room_id=room_id)

    async def audit_refusal(self, sid: str, claims: RoomClaims, event: str, code: str) -> None:
        """A refused signaling action (someone else's object, another consultation)."""
        participant = self._participants.find(sid)
        room_id = participant.room_id if participant else claims.room_id
        try:
            await self._join_gate.record_refusal(
                room_id, claims.participant_id, claims.role, event, code
            )
        except Exception:
            log.exception("refusal_audit_failed", room_id=room_id)

    async def participant_count(self, room_id: str) -> int:
        return len(await self._state.participant_ids(room_id))

    async def close_if_abandoned(self, room_id: str, created_before: float) -> bool:
        """Close a room nobody is in (made again after its worker died, and nobody
        came back) once it is older than ``created_before``; drop the id of a room
        whose state expired."""
        if await self._state.participant_ids(room_id):
            return False
        async with self._state.room_lock(room_id):
            room = await self._state.get_room(room_id)
            if room is None:
                await self._state.delete_room(room_id)  # its keys expired: the id goes
                return False
            if room.createdAt > created_before or await self._state.participant_ids(room_id):
                return False
            await self._routers.close(room)
        log.info("abandoned_room_closed", room_id=room_id)
        return True

    async def close_room_for_session(self, room_id: str, reason: str) -> None:
        """The session ended: tell everyone why, disconnect them, close the room."""
        await self._notifier.to_room(
            room_id, "sessionEnded", {"reason": reason, "message": "the consultation has ended"}
        )
        async with self._state.room_lock(room_id):
            room = await self._state.get_room(room_id)
            records = await self._state.participants(room_id)
            for participant in self._participants.in_room(room_id):
                self._participants.remove(participant.sid)
            if room is not None:
                await self._routers.close(room)
        for record in records:
            await self._presence.forget(room_id, record.peerId, record.instance)
            if record.sid:
                await self._notifier.leave_room(record.sid, room_id)
                await self._notifier.disconnect(record.sid)
        await self.waiting_room.session_ended(room_id)
        log.info("room_closed_for_session", room_id=room_id, reason=reason, records=len(records))

    async def expire(self, room_id: str, participant_id: str, now: float) -> bool:
        """A disconnected participant did not resume within its window."""
        removed = await self.remove(room_id, participant_id, "timeout", sid="")
        if not removed:  # it resumed meanwhile, or is gone already
            await self._presence.clear_deadline(room_id, participant_id, now)
        return removed
