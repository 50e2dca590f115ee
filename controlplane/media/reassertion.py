"""Redis restarted without its data (it keeps live state only in memory): each
instance puts back the live state of the participants it serves (their room,
records, transports, producers and consumers, and that it serves them) from
what it holds itself, so signaling goes on and nobody is dropped.  Media never
depended on Redis, and SFU nodes register again on their next heartbeat.

A restart is told by the server's ``run_id`` changing; the check runs once per
restart, so it never races ordinary removals.  What no instance holds is not
put back: participants that were disconnected, waiting to resume, get
RESUME_EXPIRED and join again.  (A FLUSHALL without a restart is not noticed.)"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog

from controlplane.media.participants import LocalParticipants, Participant, participant_record
from controlplane.media.presence import Presence
from controlplane.media.room_records import ConsumerRecord, ProducerRecord
from controlplane.media.room_state import RoomState, participant_key, room_key

log = structlog.get_logger(__name__)


class Reassertion:
    def __init__(
        self,
        redis: aioredis.Redis,
        participants: LocalParticipants,
        state: RoomState,
        presence: Presence,
    ) -> None:
        self._redis = redis
        self._participants = participants
        self._state = state
        self._presence = presence
        self._run_id: str | None = None

    async def check(self) -> int:
        """After a Redis restart, put back whatever is missing; returns how many
        participants were."""
        run_id = str((await self._redis.info("server"))["run_id"])
        if run_id == self._run_id:
            return 0
        restored = 0 if self._run_id is None else await self._reassert_all()
        self._run_id = run_id  # only once all is back: a failure is tried again
        return restored

    async def _reassert_all(self) -> int:
        rooms = self._participants.by_room()
        if not rooms:
            return 0
        ids = {room_id: [p.participant_id for p in members] for room_id, members in rooms.items()}
        restored = 0
        for room_id in await self._missing(ids):
            restored += await self._reassert(room_id, rooms[room_id])
        return restored

    async def _missing(self, rooms: dict[str, list[str]]) -> list[str]:
        """Of these rooms (with some of their participants), those whose record or
        one of those participants' records is gone."""
        pipe = self._redis.pipeline(transaction=False)
        for room_id, participant_ids in rooms.items():
            pipe.exists(room_key(room_id), *(participant_key(room_id, p) for p in participant_ids))
        found = await pipe.execute()
        return [
            room_id for room_id, n in zip(rooms, found, strict=True) if n < 1 + len(rooms[room_id])
        ]

    async def _reassert(self, room_id: str, members: list[Participant]) -> int:
        async with self._state.room_lock(room_id):
            room = await self._state.get_room(room_id)
            if room is None:
                room = members[0].room
                await self._state.create_room(room)
            restored = 0
            for participant in members:
                if (
                    self._participants.is_current(participant)
                    and participant.router_id == room.routerId
                    and await self._state.get_participant(room_id, participant.participant_id)
                    is None
                ):
                    await self._restore(participant)
                    restored += 1
        log.warning("room_state_reasserted", room_id=room_id, participants=restored)
        return restored

    async def _restore(self, participant: Participant) -> None:
        room_id, participant_id = participant.room_id, participant.participant_id
        await self._state.add_participant(
            room_id,
            participant_record(participant, self._presence.instance_id, self._presence.window),
        )
        for transport_id, direction in participant.transports.items():
            await self._state.add_transport(room_id, participant_id, transport_id, direction)
        for producer_id, source in participant.producers.items():
            await self._state.add_producer(
                room_id,
                ProducerRecord(
                    producerId=producer_id,
                    peerId=participant_id,
                    kind=participant.producer_kinds.get(producer_id, ""),
                    source=source,
                    paused=producer_id in participant.paused,
                ),
            )
        for consumer_id, producer_id in participant.consumers.items():
            await self._state.add_consumer(
                room_id,
                ConsumerRecord(
                    consumerId=consumer_id,
                    peerId=participant_id,
                    producerId=producer_id,
                    kind=participant.consumer_kinds.get(consumer_id, ""),
                    paused=consumer_id in participant.paused,
                    transportId=participant.consumer_transports.get(consumer_id, ""),
                    layered=consumer_id in participant.layered,
                ),
            )
        await self._presence.attach(room_id, participant_id)
