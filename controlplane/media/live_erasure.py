"""Erasure of one participant's personal live state in Redis (a patient's erasure
request): the display name in its peer record and in its waiting-room admission
is blanked, its latest client stats and quality history are deleted.  A call in
progress goes on (the participant shows as its role); the rest of a room's live
state expires on its own.  Room tokens minted before carry the name in a claim:
a marker (``telemed:erased:P``, for as long as a room token lives) makes the
signaling server drop the name of such a token at connect.  Pages already open
keep showing the name until they reload."""

from __future__ import annotations

from dataclasses import replace

import redis.asyncio as aioredis

from controlplane.media.admission import Admission, AdmissionStore
from controlplane.media.room_keys import participant_key


async def _nameless(admission: Admission | None) -> Admission | None:
    if admission is not None and admission.displayName:
        return replace(admission, displayName="")
    return admission


def _marker(participant_id: str) -> str:
    return f"telemed:erased:{participant_id}"


class LiveStateEraser:
    def __init__(self, redis: aioredis.Redis, marker_ttl: int) -> None:
        self._redis = redis
        self._marker_ttl = marker_ttl
        self._admissions = AdmissionStore(redis)
        # Blanks the name only while the record exists (HSET alone would recreate it).
        self._blank = redis.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then "
            "redis.call('HSET', KEYS[1], 'displayName', ''); return 1 end return 0"
        )

    async def erase(self, room_ids: list[str], participant_id: str) -> int:
        """How many items (names, stats, histories) were erased."""
        await self._redis.set(_marker(participant_id), "1", ex=self._marker_ttl)
        erased = 0
        for room_id in room_ids:
            peer = participant_key(room_id, participant_id)
            pipe = self._redis.pipeline(transaction=False)
            pipe.hget(peer, "displayName")
            pipe.delete(f"{peer}:stats", f"{peer}:quality")
            name, deleted = await pipe.execute()
            erased += int(deleted)
            if name:
                erased += int(await self._blank(keys=[peer]))
            before, after = await self._admissions.change(room_id, participant_id, _nameless)
            erased += int(after is not before)
        return erased

    async def name_erased(self, participant_id: str) -> bool:
        """Whether a token's display name must be dropped (its owner asked for erasure)."""
        return bool(await self._redis.exists(_marker(participant_id)))
