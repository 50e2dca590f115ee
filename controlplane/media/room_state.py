"""Live room state in Redis: which SFU node and router hold each consultation
room, its participants, and their transports, producers and consumers.

Any control-plane instance can answer "who is in room X and what are they
sending" from here.  Keys of one room share the hash tag ``{roomId}`` so they
stay on one Redis Cluster slot:

  telemed:rooms                        set   live room ids
  telemed:room:{R}                     hash  roomId nodeId routerId callType createdAt workerPid
  telemed:room:{R}:peers               set   peer ids
  telemed:room:{R}:peer:P              hash  peerId role displayName sid instance joinedAt
  telemed:room:{R}:peer:P:transports   hash  transportId -> direction
  telemed:room:{R}:peer:P:producers    hash  producerId -> json {kind, source, paused}
  telemed:room:{R}:peer:P:consumers    hash  consumerId -> json {producerId, kind, paused}
  telemed:room:{R}:peer:P:stats        string json: the latest client stats report
  telemed:room:{R}:peer:P:quality      list  recent quality samples (newest first)
  telemed:room:{R}:producers           hash  producerId -> peer id (room-wide index)
  telemed:sfu:node:N:rooms             set   room ids placed on node N
  telemed:router:X                     string room id of router X
  telemed:room:{R}:waiting / :admission / :banned   the waiting room (admission.py)

The record classes keep the stored field names (camelCase, ``peerId`` as on the
wire); the Python code calls a peer a participant.  Everything of a room but its
waiting room is deleted when its last participant leaves.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis

from controlplane.media import room_reads
from controlplane.media.room_keys import (
    node_rooms_key,
    participant_key,
    participants_key,
    producers_key,
    room_key,
    room_producers_key,
    router_key,
    waiting_key,
)
from controlplane.media.room_lock import RoomLock, RoomLocks
from controlplane.media.room_reads import RoomView
from controlplane.media.room_records import (
    ConsumerRecord,
    ParticipantRecord,
    ProducerRecord,
    RoomRecord,
    producer_payload,
)
from controlplane.redis_text import optional_text, text_map, texts

__all__ = [
    "ConsumerRecord",
    "ParticipantRecord",
    "ProducerRecord",
    "RoomRecord",
    "RoomState",
    "RoomView",
    "participant_key",
    "producer_payload",
    "room_key",
    "waiting_key",
]

ROOMS_KEY = "telemed:rooms"


class RoomState:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._locks = RoomLocks(redis)

    def room_lock(self, room_id: str, timeout: float = 20.0) -> RoomLock:
        """The lock serialising membership changes of one room across instances
        (room_lock.py: a local lock in front of the Redis one)."""
        return self._locks(room_id, timeout)

    # ---- rooms -------------------------------------------------------------

    async def create_room(self, room: RoomRecord) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(room_key(room.roomId), mapping={k: str(v) for k, v in asdict(room).items()})
        pipe.sadd(ROOMS_KEY, room.roomId)
        pipe.sadd(node_rooms_key(room.nodeId), room.roomId)
        pipe.set(router_key(room.routerId), room.roomId)
        await pipe.execute()

    async def set_recording(self, room_id: str, recording_id: str | None) -> None:
        """Which recording the room is in (a field of the room's hash, so it lives
        and expires with the room)."""
        if recording_id:
            await self._redis.hset(room_key(room_id), "recordingId", recording_id)
        else:
            await self._redis.hdel(room_key(room_id), "recordingId")

    async def recording_of(self, room_id: str) -> str | None:
        value = await self._redis.hget(room_key(room_id), "recordingId")
        return value.decode() if isinstance(value, bytes) else value

    async def get_room(self, room_id: str) -> RoomRecord | None:
        raw = text_map(await self._redis.hgetall(room_key(room_id)))
        if not raw:
            return None
        return RoomRecord(
            roomId=raw["roomId"],
            nodeId=raw["nodeId"],
            routerId=raw["routerId"],
            callType=raw["callType"],
            createdAt=float(raw["createdAt"]),
            workerPid=int(raw.get("workerPid", 0)),
        )

    async def room_ids(self) -> list[str]:
        return texts(await self._redis.smembers(ROOMS_KEY))

    async def rooms_on_node(self, node_id: str) -> list[str]:
        return texts(await self._redis.smembers(node_rooms_key(node_id)))

    async def room_for_router(self, router_id: str) -> str | None:
        return optional_text(await self._redis.get(router_key(router_id)))

    async def delete_room(self, room_id: str) -> None:
        """Remove a room and everything under it."""
        room = await self.get_room(room_id)
        participant_ids = texts(await self._redis.smembers(participants_key(room_id)))
        keys = [room_key(room_id), participants_key(room_id), room_producers_key(room_id)]
        for participant_id in participant_ids:
            keys.extend(self._participant_keys(room_id, participant_id))
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.srem(ROOMS_KEY, room_id)
        if room is not None:
            pipe.srem(node_rooms_key(room.nodeId), room_id)
            pipe.delete(router_key(room.routerId))
        await pipe.execute()

    # ---- participants -------------------------------------------------------------

    @staticmethod
    def _participant_keys(room_id: str, participant_id: str) -> list[str]:
        base = participant_key(room_id, participant_id)
        return [
            base,
            f"{base}:transports",
            f"{base}:producers",
            f"{base}:consumers",
            f"{base}:stats",
            f"{base}:quality",
        ]

    async def add_participant(self, room_id: str, record: ParticipantRecord) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            participant_key(room_id, record.peerId),
            mapping={k: str(v) for k, v in asdict(record).items()},
        )
        pipe.sadd(participants_key(room_id), record.peerId)
        await pipe.execute()

    async def get_participant(self, room_id: str, participant_id: str) -> ParticipantRecord | None:
        raw = text_map(await self._redis.hgetall(participant_key(room_id, participant_id)))
        if "peerId" not in raw:
            return None
        return ParticipantRecord.from_stored(raw)

    async def update_participant(
        self, room_id: str, participant_id: str, fields: dict[str, str | int | float]
    ) -> None:
        """Change some fields of a participant's record (the room lock is held)."""
        await self._redis.hset(
            participant_key(room_id, participant_id),
            mapping={k: str(v) for k, v in fields.items()},
        )

    async def refresh_ttl(
        self, room_id: str, router_id: str, participant_ids: list[str], ttl: int
    ) -> None:
        """Give a room's keys (and those of the given participants) ``ttl`` more seconds:
        live state nobody serves any more expires on its own."""
        keys = [
            room_key(room_id),
            participants_key(room_id),
            room_producers_key(room_id),
            router_key(router_id),
        ]
        for participant_id in participant_ids:
            keys.extend(self._participant_keys(room_id, participant_id))
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.expire(key, ttl)
        await pipe.execute()

    async def participant_ids(self, room_id: str) -> list[str]:
        return texts(await self._redis.smembers(participants_key(room_id)))

    async def participants(self, room_id: str) -> list[ParticipantRecord]:
        return await room_reads.participants(self._redis, room_id)

    async def view(self, room_id: str) -> RoomView:
        """Participants, waiting ids, producers of those not waiting, recording:
        two round trips (a join's answer)."""
        return await room_reads.room_view(self._redis, room_id)

    async def remove_participant(self, room_id: str, participant_id: str) -> int:
        """Remove a participant and everything it owns; returns how many remain."""
        producer_ids = await self._redis.hkeys(producers_key(room_id, participant_id))
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*self._participant_keys(room_id, participant_id))
        pipe.srem(participants_key(room_id), participant_id)
        if producer_ids:
            pipe.hdel(room_producers_key(room_id), *producer_ids)
        pipe.scard(participants_key(room_id))
        results = await pipe.execute()
        remaining: int = results[-1]
        return remaining

    # ---- transports ----------------------------------------------------------

    async def add_transport(
        self, room_id: str, participant_id: str, transport_id: str, direction: str
    ) -> None:
        await self._redis.hset(
            f"{participant_key(room_id, participant_id)}:transports", transport_id, direction
        )

    async def remove_transport(self, room_id: str, participant_id: str, transport_id: str) -> None:
        await self._redis.hdel(
            f"{participant_key(room_id, participant_id)}:transports", transport_id
        )

    async def transports(self, room_id: str, participant_id: str) -> dict[str, str]:
        return text_map(
            await self._redis.hgetall(f"{participant_key(room_id, participant_id)}:transports")
        )

    # ---- producers -----------------------------------------------------------

    async def add_producer(self, room_id: str, producer: ProducerRecord) -> None:
        body = json.dumps(
            {"kind": producer.kind, "source": producer.source, "paused": producer.paused}
        )
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(producers_key(room_id, producer.peerId), producer.producerId, body)
        pipe.hset(room_producers_key(room_id), producer.producerId, producer.peerId)
        await pipe.execute()

    async def set_producer_paused(
        self, room_id: str, participant_id: str, producer_id: str, paused: bool
    ) -> None:
        key = producers_key(room_id, participant_id)
        raw = optional_text(await self._redis.hget(key, producer_id))
        if raw is None:
            return
        body = json.loads(raw)
        body["paused"] = paused
        await self._redis.hset(key, producer_id, json.dumps(body))

    async def producers_of(self, room_id: str, participant_id: str) -> list[ProducerRecord]:
        raw = text_map(await self._redis.hgetall(producers_key(room_id, participant_id)))
        return [
            ProducerRecord.from_stored(pid, participant_id, body)
            for pid, body in sorted(raw.items())
        ]

    async def waiting_ids(self, room_id: str) -> set[str]:
        return set(texts(await self._redis.smembers(waiting_key(room_id))))

    async def producers_in_room(self, room_id: str) -> list[ProducerRecord]:
        """The producers others may receive (and a recording takes): not those of
        participants in the waiting room."""
        return await room_reads.producers_in_room(self._redis, room_id)

    async def producer_owner(self, room_id: str, producer_id: str) -> str | None:
        return optional_text(await self._redis.hget(room_producers_key(room_id), producer_id))

    async def remove_producer(self, room_id: str, participant_id: str, producer_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(producers_key(room_id, participant_id), producer_id)
        pipe.hdel(room_producers_key(room_id), producer_id)
        await pipe.execute()

    # ---- consumers -----------------------------------------------------------

    async def add_consumer(self, room_id: str, consumer: ConsumerRecord) -> None:
        await self._redis.hset(
            f"{participant_key(room_id, consumer.peerId)}:consumers",
            consumer.consumerId,
            consumer.stored(),
        )

    async def consumers_of(self, room_id: str, participant_id: str) -> list[ConsumerRecord]:
        raw = text_map(
            await self._redis.hgetall(f"{participant_key(room_id, participant_id)}:consumers")
        )
        return [
            ConsumerRecord.from_stored(cid, participant_id, body)
            for cid, body in sorted(raw.items())
        ]

    async def set_consumer_paused(
        self, room_id: str, participant_id: str, consumer_id: str, paused: bool
    ) -> None:
        key = f"{participant_key(room_id, participant_id)}:consumers"
        raw = optional_text(await self._redis.hget(key, consumer_id))
        if raw is None:
            return
        body = json.loads(raw)
        body["paused"] = paused
        await self._redis.hset(key, consumer_id, json.dumps(body))

    async def remove_consumer(self, room_id: str, participant_id: str, consumer_id: str) -> None:
        await self._redis.hdel(f"{participant_key(room_id, participant_id)}:consumers", consumer_id)

    # ---- client stats ----------------------------------------------------------

    async def set_client_stats(
        self, room_id: str, participant_id: str, report: dict[str, Any]
    ) -> None:
        """Keep the latest stats report of a participant (overwrites the previous one)."""
        await self._redis.set(
            f"{participant_key(room_id, participant_id)}:stats", json.dumps(report)
        )

    async def client_stats(self, room_id: str, participant_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{participant_key(room_id, participant_id)}:stats")
        if raw is None:
            return None
        report: dict[str, Any] = json.loads(raw)
        return report

    # ---- snapshot ------------------------------------------------------------

    async def snapshot(self, room_id: str) -> dict[str, Any] | None:
        """Who is in the room and what each participant sends and receives."""
        room = await self.get_room(room_id)
        if room is None:
            return None
        participants = [
            {
                "peerId": r.peerId,
                "role": r.role,
                "displayName": r.displayName,
                "joinedAt": r.joinedAt,
                "transports": await self.transports(room_id, r.peerId),
                "producers": [_own(p) for p in await self.producers_of(room_id, r.peerId)],
                "consumers": [_own(c) for c in await self.consumers_of(room_id, r.peerId)],
            }
            for r in await self.participants(room_id)
        ]
        return {**asdict(room), "peers": participants}


def _own(record: ProducerRecord | ConsumerRecord) -> dict[str, Any]:
    """A record as listed under its participant (without the participant's id)."""
    return {k: v for k, v in asdict(record).items() if k != "peerId"}
