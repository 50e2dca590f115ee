"""A room whose media is gone (its SFU node or worker died): everyone in it is
told to rejoin and its live state is dropped."""

from __future__ import annotations

import structlog

from controlplane.media.participants import LocalParticipants
from controlplane.media.ports import Notifier
from controlplane.media.room_state import RoomState

log = structlog.get_logger(__name__)


class RoomFailures:
    def __init__(
        self, participants: LocalParticipants, state: RoomState, notifier: Notifier
    ) -> None:
        self._participants = participants
        self._state = state
        self._notifier = notifier

    async def fail_room(self, room_id: str, reason: str) -> None:
        """State goes first, so a client that rejoins as soon as it is told gets a new room."""
        log.error("room_failed", room_id=room_id, reason=reason)
        affected = self._participants.in_room(room_id)
        for participant in affected:
            self._participants.remove(participant.sid)
        await self._state.delete_room(room_id)
        for participant in affected:
            await self._notifier.to_peer(
                participant.sid,
                "roomClosed",
                {
                    "reason": reason,
                    "rejoin": True,
                    "message": "the media server failed; rejoin to continue",
                },
            )
            await self._notifier.leave_room(participant.sid, room_id)
