"""The room lock: membership changes of one room are serialised across
control-plane instances by a Redis lock, and within an instance by an asyncio
lock in front of it.

redis-py's lock polls when it is taken (one ``SET NX`` per try, 100 ms apart
by default): joins of one room on one instance queued that way waited up to
100 ms more each and spent the instance's CPU on the tries.  Now the joins of
one instance wait on the local lock, in order, and only the one holding it
asks Redis, which another instance may hold; that wait polls every
``REDIS_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import redis.asyncio as aioredis
from redis.exceptions import LockError

REDIS_POLL = 0.01


class _Local:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class RoomLocks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._local: dict[str, _Local] = {}

    def __call__(self, room_id: str, timeout: float) -> RoomLock:
        return RoomLock(self, room_id, timeout)

    def held_locally(self) -> int:
        """Rooms with a local lock in use (taken or waited for)."""
        return len(self._local)

    def _enter(self, room_id: str) -> _Local:
        local = self._local.get(room_id)
        if local is None:
            local = self._local[room_id] = _Local()
        local.users += 1
        return local

    def _leave(self, room_id: str, local: _Local) -> None:
        local.users -= 1
        if local.users == 0:
            del self._local[room_id]


class RoomLock:
    """``async with``: the room's local lock, then its Redis lock, both within
    ``timeout`` seconds (else LockError, as redis-py's own lock raises)."""

    def __init__(self, locks: RoomLocks, room_id: str, timeout: float) -> None:
        self._locks = locks
        self._room_id = room_id
        self._timeout = timeout
        self._redis_lock = locks._redis.lock(
            f"telemed:lock:room:{room_id}",
            timeout=timeout,
            sleep=REDIS_POLL,
            blocking_timeout=timeout,
        )
        self._local: _Local | None = None

    async def __aenter__(self) -> RoomLock:
        local = self._locks._enter(self._room_id)
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                await local.lock.acquire()
        except TimeoutError:
            self._locks._leave(self._room_id, local)
            raise LockError("Unable to acquire lock within the time specified") from None
        except BaseException:
            self._locks._leave(self._room_id, local)
            raise
        try:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            if not await self._redis_lock.acquire(blocking_timeout=remaining):
                raise LockError("Unable to acquire lock within the time specified")
        except BaseException:
            local.lock.release()
            self._locks._leave(self._room_id, local)
            raise
        self._local = local
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        local, self._local = self._local, None
        try:
            await self._redis_lock.release()
        finally:
            if local is not None:
                local.lock.release()
                self._locks._leave(self._room_id, local)
