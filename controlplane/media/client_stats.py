"""A participant's own WebRTC stats reports (``reportStats``): checked to name only
its own streams, kept as the latest report in Redis, and the first report with
inbound media marks the participant's join -> first media time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.room_state import RoomState
from schemas.errors import ApiError, ErrorCode

FirstMediaObserver = Callable[[str, float], None]  # (call type, seconds since join)


class ClientStats:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        on_first_media: FirstMediaObserver | None = None,
    ) -> None:
        self._participants = participants
        self._state = state
        self._on_first_media = on_first_media
        # Told every accepted report (call-quality sampling wakes on a troubled one).
        self.report_listeners: list[Callable[[Participant, dict[str, Any]], None]] = []

    async def record(self, sid: str, report: dict[str, Any]) -> dict[str, Any]:
        """Keep a participant's latest report (validated by the schema)."""
        participant = self._participants.get(sid)
        own_producers = set(participant.producers)
        own_consumers = set(participant.consumers)
        for stream in report["streams"]:
            producer_id = stream.get("producerId")
            consumer_id = stream.get("consumerId")
            if (producer_id and producer_id not in own_producers) or (
                consumer_id and consumer_id not in own_consumers
            ):
                raise ApiError(ErrorCode.NOT_FOUND, "stats name a stream that is not yours")
        if not participant.first_media_seen and any(
            s["direction"] == "inbound" and (s.get("framesDecoded") or s.get("packets"))
            for s in report["streams"]
        ):
            participant.first_media_seen = True
            if self._on_first_media is not None:
                self._on_first_media(
                    participant.call_type, time.monotonic() - participant.joined_at
                )
        for listener in self.report_listeners:
            listener(participant, report)
        await self._state.set_client_stats(
            participant.room_id,
            participant.participant_id,
            {**report, "receivedAt": time.time(), "peerId": participant.participant_id},
        )
        return {"stored": True}
