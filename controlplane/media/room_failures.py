"""A room whose media is gone (its SFU node or worker died): it is made again
on a live worker at once, and everyone in it is told to rejoin it."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.ports import Notifier
from controlplane.media.room_placement import RoomPlacement
from controlplane.media.room_state import RoomState
from schemas.errors import ApiError

log = structlog.get_logger(__name__)

# (node id, router id) -> whether that router died
RouterGone = Callable[[str, str], bool]

REASON = "media_server_failure"


class RoomFailures:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        notifier: Notifier,
        placement: RoomPlacement,
    ) -> None:
        self._participants = participants
        self._state = state
        self._notifier = notifier
        self._placement = placement

    async def fail_room(self, room_id: str) -> None:
        """Drop a room whose node is gone (the room lock is held; the caller places
        it again).  State goes first, so a client told to rejoin gets the new room."""
        log.error("room_failed", room_id=room_id, reason=REASON)
        affected = [self._participants.remove(p.sid) for p in self._participants.in_room(room_id)]
        await self._state.delete_room(room_id)
        await self._tell_rejoin(room_id, [p for p in affected if p is not None])

    async def move_room(self, room_id: str, gone: RouterGone) -> None:
        """The router of a room died with its worker or node.  Every instance hears
        of it: the first one drops the room and makes it again on a live worker;
        each one tells its own participants on the dead router to rejoin, at once
        (the new room is ready when they do)."""
        async with self._state.room_lock(room_id):
            affected = [
                p for p in self._participants.in_room(room_id) if gone(p.node_id, p.router_id)
            ]
            for participant in affected:
                self._participants.remove(participant.sid)
            room = await self._state.get_room(room_id)
            if room is not None and gone(room.nodeId, room.routerId):
                log.error("room_failed", room_id=room_id, reason=REASON)
                await self._state.delete_room(room_id)
                try:
                    await self._placement.place(room_id, room.callType)
                except ApiError:
                    pass  # logged; the first rejoin tries again
        await self._tell_rejoin(room_id, affected)

    async def _tell_rejoin(self, room_id: str, affected: list[Participant]) -> None:
        for participant in affected:
            await self._notifier.to_peer(
                participant.sid,
                "roomClosed",
                {
                    "reason": REASON,
                    "rejoin": True,
                    "message": "the media server failed; rejoin to continue",
                },
            )
            await self._notifier.leave_room(participant.sid, room_id)
