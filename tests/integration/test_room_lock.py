"""The room lock (controlplane/media/room_lock.py) on a real Redis: many holders at
once on one instance and on two instances (two clients, two RoomStates) never
overlap; a timeout gives LockError and leaves nothing behind; the local locks of
rooms no longer in use are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import LockError

from controlplane.media.room_state import RoomState
from tests.conftest import Stack, new_room_id

pytestmark = pytest.mark.integration


async def hold(
    state: RoomState, room: str, inside: list[int], log: list[int], seconds: float
) -> None:
    async with state.room_lock(room):
        inside.append(1)
        log.append(len(inside))  # how many held it at once
        await asyncio.sleep(seconds)
        inside.pop()


@pytest.fixture
async def instances(stack: Stack) -> AsyncIterator[tuple[RoomState, RoomState]]:
    """The room state of two instances: a Redis client each."""
    clients = [aioredis.from_url(stack.redis_url, decode_responses=True) for _ in range(2)]
    yield RoomState(clients[0]), RoomState(clients[1])
    for client in clients:
        await client.aclose()


async def test_holders_on_one_and_two_instances_never_overlap(
    instances: tuple[RoomState, RoomState], redis
) -> None:
    one, two = instances
    room = new_room_id("lock")
    inside: list[int] = []
    log: list[int] = []
    holders = [hold(one, room, inside, log, 0.002) for _ in range(30)]
    holders += [hold(two, room, inside, log, 0.002) for _ in range(10)]
    await asyncio.wait_for(asyncio.gather(*holders), 30)
    assert len(log) == 40 and max(log) == 1
    assert one._locks.held_locally() == 0 and two._locks.held_locally() == 0
    assert await redis.exists(f"telemed:lock:room:{room}") == 0


async def test_a_lock_not_had_in_time_raises_and_leaves_nothing(
    instances: tuple[RoomState, RoomState],
) -> None:
    one, two = instances
    room = new_room_id("lock")
    async with one.room_lock(room):
        with pytest.raises(LockError):  # held by the other instance
            async with two.room_lock(room, timeout=0.2):
                pass
        with pytest.raises(LockError):  # held on this instance
            async with one.room_lock(room, timeout=0.2):
                pass
    assert one._locks.held_locally() == 0 and two._locks.held_locally() == 0
    async with two.room_lock(room, timeout=1):  # free again
        pass
