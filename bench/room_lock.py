"""The room lock under contention: K rooms, in each two holders at once (a
physician and a patient pressing "join" together), each keeping the lock as long
as a join does (``--hold`` ms), on one control-plane instance.  Prints p50 / p95
/ max of the time each waited for the lock, with redis-py's lock as the room
lock was before (it polls Redis every 100 ms when taken) and with the room lock
now (controlplane/media/room_lock.py: a local lock in front of the Redis one),
alternating rounds in one process on one Redis.

    .venv/bin/python bench/room_lock.py --rooms 50 --rounds 10

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.devstack.services import start_redis  # noqa: E402
from controlplane.media.room_state import RoomState  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

LockFactory = Callable[[str], AbstractAsyncContextManager[Any]]


async def one_round(lock: LockFactory, rooms: int, hold: float, waits: list[float]) -> None:
    async def holder(room: str) -> None:
        started = time.perf_counter()
        async with lock(room):
            waits.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(hold)

    tag = time.monotonic_ns()
    await asyncio.gather(*(holder(f"bench-{tag}-{r}") for r in range(rooms) for _ in range(2)))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hold", type=float, default=10.0, help="ms each holder keeps it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as folder:
        redis_process = start_redis(Path(folder))
        client = aioredis.from_url(redis_process.url, decode_responses=True)
        state = RoomState(client)
        ways: dict[str, LockFactory] = {
            "redis-py lock (before)": lambda room: client.lock(
                f"telemed:lock:room:{room}", timeout=20, blocking_timeout=20
            ),
            "room lock (now)": lambda room: state.room_lock(room),
        }
        waits: dict[str, list[float]] = {way: [] for way in ways}
        try:
            for _ in range(args.rounds):
                for way, lock in ways.items():
                    await one_round(lock, args.rooms, args.hold / 1000, waits[way])
        finally:
            await client.aclose()
            redis_process.stop()
    print(
        f"{args.rooms} rooms x 2 holders at once, {args.hold:g} ms held, {args.rounds} rounds:"
        " wait for the room lock"
    )
    print(f"{'(ms)':<26}{'n':>6}{'p50':>8}{'p95':>8}{'max':>8}")
    for way, ms in waits.items():
        print(
            f"{way:<26}{len(ms):>6}{statistics.median(ms):>8.1f}"
            f"{percentile(ms, 0.95):>8.1f}{max(ms):>8.1f}"
        )
    before, now = (percentile(v, 0.95) for v in waits.values())
    print(f"p95 ratio, now / before: {now / before:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
