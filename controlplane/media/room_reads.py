"""Reads of a whole room from Redis in a fixed number of round trips: one for
the room's sets, one pipeline for every participant's hashes (not one round
trip per participant).  The join path reads the room as a newcomer sees it
with ``room_view``: two round trips whatever the room's size."""

from __future__ import annotations

from dataclasses import dataclass

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

    participants: list[ParticipantRecord]
    waiting: set[str]
    # Those of participants not in the waiting room (what others may receive).
    producers: list[ProducerRecord]
    recording: str | None


def _producers(participant_id: str, raw: dict[str, str]) -> list[ProducerRecord]:
    return [
        ProducerRecord.from_stored(pid, participant_id, body) for pid, body in sorted(raw.items())
    ]


async def _hashes(redis: aioredis.Redis, keys: list[str]) -> list[dict[str, str]]:
    """Every hash of ``keys`` in one round trip."""
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return [text_map(raw) for raw in await pipe.execute()]


async def room_view(redis: aioredis.Redis, room_id: str) -> RoomView:
    pipe = redis.pipeline(transaction=False)
    pipe.smembers(participants_key(room_id))
    pipe.smembers(waiting_key(room_id))
    pipe.hget(room_key(room_id), "recordingId")
    raw_ids, raw_waiting, raw_recording = await pipe.execute()
    ids, waiting = texts(raw_ids), set(texts(raw_waiting))
    sending = [pid for pid in ids if pid not in waiting]
    # Both kinds of hash in the same round trip.
    hashes = await _hashes(
        redis,
        [participant_key(room_id, pid) for pid in ids]
        + [producers_key(room_id, pid) for pid in sending],
    )
    records, stored = hashes[: len(ids)], hashes[len(ids) :]
    return RoomView(
        participants=[ParticipantRecord.from_stored(r) for r in records if "peerId" in r],
        waiting=waiting,
        producers=[
            p for pid, raw in zip(sending, stored, strict=True) for p in _producers(pid, raw)
        ],
        recording=optional_text(raw_recording),
    )


async def participants(redis: aioredis.Redis, room_id: str) -> list[ParticipantRecord]:
    ids = texts(await redis.smembers(participants_key(room_id)))
    records = await _hashes(redis, [participant_key(room_id, pid) for pid in ids])
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
    stored = await _hashes(redis, [producers_key(room_id, pid) for pid in ids])
    return [p for pid, raw in zip(ids, stored, strict=True) for p in _producers(pid, raw)]
