"""Which control-plane instances are alive, which participants each one serves,
and until when disconnected participants may resume.  All in Redis, so any
instance can take over from one that stopped or crashed:

  telemed:instances                  set     instance ids
  telemed:instance:I                 string  I's heartbeat; expires unless I keeps beating
  telemed:instance:I:participants    set     "roomId|participantId" connected through I
  telemed:resume:deadlines           zset    "roomId|participantId" -> resume deadline (unix s)
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis

from controlplane.redis_text import texts

INSTANCES_KEY = "telemed:instances"
DEADLINES_KEY = "telemed:resume:deadlines"
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 10.0


def _heartbeat_key(instance_id: str) -> str:
    return f"telemed:instance:{instance_id}"


def _served_key(instance_id: str) -> str:
    return f"telemed:instance:{instance_id}:participants"


def _member(room_id: str, participant_id: str) -> str:
    # Room and participant ids never contain "|" (schemas.ids.ID_PATTERN).
    return f"{room_id}|{participant_id}"


def _parse(member: str) -> tuple[str, str]:
    room_id, _, participant_id = member.partition("|")
    return room_id, participant_id


class Presence:
    def __init__(self, redis: aioredis.Redis, instance_id: str, window: float) -> None:
        self._redis = redis
        self.instance_id = instance_id
        # Seconds a disconnected participant keeps its media and may resume.
        self.window = window

    async def beat(self) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(_heartbeat_key(self.instance_id), str(time.time()), px=int(HEARTBEAT_TTL * 1000))
        pipe.sadd(INSTANCES_KEY, self.instance_id)
        await pipe.execute()

    async def stop_beating(self) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(_heartbeat_key(self.instance_id))
        pipe.srem(INSTANCES_KEY, self.instance_id)
        await pipe.execute()

    async def attach(self, room_id: str, participant_id: str) -> None:
        """The participant is connected through this instance (joined or resumed)."""
        member = _member(room_id, participant_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(_served_key(self.instance_id), member)
        pipe.zrem(DEADLINES_KEY, member)
        await pipe.execute()

    async def detach(self, room_id: str, participant_id: str, deadline: float) -> None:
        """The participant's connection dropped: it may resume until ``deadline``."""
        member = _member(room_id, participant_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(_served_key(self.instance_id), member)
        pipe.zadd(DEADLINES_KEY, {member: deadline})
        await pipe.execute()

    async def forget(self, room_id: str, participant_id: str, instance_id: str = "") -> None:
        """The participant left or was removed."""
        member = _member(room_id, participant_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(DEADLINES_KEY, member)
        pipe.srem(_served_key(instance_id or self.instance_id), member)
        await pipe.execute()

    async def clear_deadline(self, room_id: str, participant_id: str, due_by: float) -> None:
        """Drop a deadline that has passed (not a newer one set meanwhile)."""
        member = _member(room_id, participant_id)
        score = await self._redis.zscore(DEADLINES_KEY, member)
        if score is not None and score <= due_by:
            await self._redis.zrem(DEADLINES_KEY, member)

    async def due(self, now: float) -> list[tuple[str, str]]:
        """Disconnected participants whose resume window has passed."""
        members = await self._redis.zrangebyscore(DEADLINES_KEY, "-inf", now)
        return [_parse(m) for m in texts(cast(list[bytes | str], members))]

    async def dead_instances(self) -> list[str]:
        """Instances that stopped beating (crashed or stopped without draining)."""
        dead = []
        for instance_id in texts(await self._redis.smembers(INSTANCES_KEY)):
            if instance_id != self.instance_id and not await self._redis.exists(
                _heartbeat_key(instance_id)
            ):
                dead.append(instance_id)
        return dead

    async def served_by(self, instance_id: str) -> list[tuple[str, str]]:
        return [_parse(m) for m in texts(await self._redis.smembers(_served_key(instance_id)))]

    async def bury(self, instance_id: str) -> None:
        """Every participant of a dead instance has been taken over."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(_served_key(instance_id))
        pipe.srem(INSTANCES_KEY, instance_id)
        await pipe.execute()
