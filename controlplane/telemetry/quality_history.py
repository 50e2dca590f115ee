"""A short history of quality samples per participant, in Redis beside the
room's live state (newest first; it expires an hour after the last sample)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from controlplane.media.room_state import room_key

HISTORY_LENGTH = 60  # samples kept per participant
HISTORY_TTL = 3600  # seconds


def history_key(room_id: str, participant_id: str) -> str:
    return f"{room_key(room_id)}:peer:{participant_id}:quality"


class QualityHistory:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def append(self, room_id: str, participant_id: str, entry: dict[str, Any]) -> None:
        key = history_key(room_id, participant_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry))
        pipe.ltrim(key, 0, HISTORY_LENGTH - 1)
        pipe.expire(key, HISTORY_TTL)
        await pipe.execute()

    async def recent(self, room_id: str, participant_id: str) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(history_key(room_id, participant_id), 0, -1)
        return [json.loads(item) for item in raw]
