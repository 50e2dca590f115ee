"""Reads of a whole room from Redis in a fixed number of round trips: one for
the room's sets, one pipeline for every participant's hashes (not one round
trip per participant).  The join path reads the room as a newcomer sees it
with ``room_view``: two round trips whatever the room's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from controlplane.media.room_keys import (
    participant_key,
    participants_key,
    producers_key,
    room_key,
    waiting_key,
)
from controlplane.media.room_records import ParticipantRecord, ProducerRecord
from controlplane.redis_text import optional_text, text_map, texts


@dataclass(frozen=True)
class RoomView:
    """A room as one read saw it."""

    participants: list[ParticipantRecord] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)
    # Those of participants not in the waiting room (what others may receive).
    producers: list[ProducerRecord] = field(default_factory=list)
    recording: str | None = None


def _producers(participant_id: str, raw: Any) -> list[ProducerRecord]:
    return [
        ProducerRecord.from_stored(pid, participant_id, body)
        for pid, body in sorted(text_map(raw).items())
    ]


async def room_view(redis: aioredis.Redis, room_id: str) -> RoomView:
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(participants_key(room_id))
    pipe.smembers(waiting_key(room_id))
    pipe.hget(room_key(room_id), "recordingId")
    raw_ids, raw_waiting, raw_recording = await pipe.execute()
    ids, waiting = texts(raw_ids), set(texts(raw_waiting))
    if not ids:
        return RoomView(waiting=waiting, recording=optional_text(raw_recording))
    pipe = redis.pipeline(transaction=False)
    for participant_id in ids:
        pipe.hgetall(participant_key(room_id, participant_id))
        pipe.hgetall(producers_key(room_id, participant_id))
    raw = await pipe.execute()
    participants: list[ParticipantRecord] = []
    producers: list[ProducerRecord] = []
    for k, participant_id in enumerate(ids):
        record = text_map(raw[2 * k])
        if "peerId" in record:
            participants.append(ParticipantRecord.from_stored(record))
        if participant_id not in waiting:
            producers.extend(_producers(participant_id, raw[2 * k + 1]))
    return RoomView(participants, waiting, producers, optional_text(raw_recording))


async def participants(redis: aioredis.Redis, room_id: str) -> list[ParticipantRecord]:
    ids = texts(await redis.smembers(participants_key(room_id)))
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for participant_id in ids:
        pipe.hgetall(participant_key(room_id, participant_id))
    records = [text_map(raw) for raw in await pipe.execute()]
    return [ParticipantRecord.from_stored(r) for r in records if "peerId" in r]


async def producers_in_room(redis: aioredis.Redis, room_id: str) -> list[ProducerRecord]:
    """The producers others may receive (and a recording takes): not those of
    participants in the waiting room."""
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(participants_key(room_id))
    pipe.smembers(waiting_key(room_id))
    raw_ids, raw_waiting = await pipe.execute()
    waiting = set(texts(raw_waiting))
    ids = [pid for pid in texts(raw_ids) if pid not in waiting]
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for participant_id in ids:
        pipe.hgetall(producers_key(room_id, participant_id))
    raw = await pipe.execute()
    return [p for k, pid in enumerate(ids) for p in _producers(pid, raw[k])]
