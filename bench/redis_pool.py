"""The control plane's CPU per Redis round trip, by connection pool: the pool it
uses (controlplane/backends.py: a FIFO semaphore in front of redis-py's plain
pool), redis-py's blocking pool with the same semaphore in front (what the control
plane used before), and redis-py's default pool (no bound on waiting: it raises
when exhausted).  Each client sends N GETs one after another, then N from 20
tasks at once; the rounds alternate between the clients in one process on one
Redis, and the medians over the rounds are printed (us of this process's CPU per
command, so Redis's own work is not in it).

    .venv/bin/python bench/redis_pool.py --commands 3000 --rounds 7

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.backends import REDIS_SOCKET_TIMEOUT, connect_redis  # noqa: E402
from controlplane.devstack.services import start_redis  # noqa: E402


class BlockingFairPool(aioredis.BlockingConnectionPool):
    """The pool as it was: turns from a FIFO semaphore, then redis-py's blocking
    pool (its condition variable and timeout on every get and release)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(self.timeout):
            await self._turns.acquire()
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._turns.release()
            raise

    async def release(self, connection: Any) -> None:
        try:
            await super().release(connection)
        finally:
            self._turns.release()


def before(url: str) -> aioredis.Redis:
    pool = BlockingFairPool.from_url(
        url,
        max_connections=256,
        timeout=2.0,
        decode_responses=True,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
        health_check_interval=10,
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


async def cpu_per_command(client: aioredis.Redis, commands: int, tasks: int) -> float:
    async def sender(count: int) -> None:
        for _ in range(count):
            await client.get("bench:key")

    started = time.process_time()
    await asyncio.gather(*(sender(commands // tasks) for _ in range(tasks)))
    return (time.process_time() - started) / commands * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as folder:
        redis_process = start_redis(Path(folder))
        try:
            clients = {
                "control plane's pool": connect_redis(redis_process.url),
                "blocking pool (before)": before(redis_process.url),
                "redis-py default pool": aioredis.from_url(
                    redis_process.url, decode_responses=True
                ),
            }
            await clients["control plane's pool"].set("bench:key", "x" * 64)
            figures: dict[str, dict[int, list[float]]] = {n: {1: [], 20: []} for n in clients}
            for client in clients.values():  # connections made, code warm
                await cpu_per_command(client, 200, 20)
            for _ in range(args.rounds):
                for name, client in clients.items():
                    for tasks in (1, 20):
                        figures[name][tasks].append(
                            await cpu_per_command(client, args.commands, tasks)
                        )
            print(f"client CPU per GET (us, median of {args.rounds} alternating rounds)")
            print(f"{'pool':26s} {'one at a time':>14s} {'20 at once':>11s}")
            for name, by_tasks in figures.items():
                print(
                    f"{name:26s} {statistics.median(by_tasks[1]):14.1f} "
                    f"{statistics.median(by_tasks[20]):11.1f}"
                )
            for client in clients.values():
                await client.aclose()
        finally:
            redis_process.stop()


if __name__ == "__main__":
    uvloop.run(main())
