"""What asyncpg's reset query on release costs a pooled query.

On a PostgreSQL of its own, the same pool settings as the control plane's
(controlplane/clinical/db.py), two pools in one process: asyncpg's own
connection class (which sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
*; RESET ALL`` on every release) and ``PooledConnection`` (which does not).
N short queries each, alternating between the pools in rounds, one at a time
and then C at once; prints the time per query (p50, p95) and this process's CPU
per query, and the ratio.

    .venv/bin/python bench/database_pool.py -n 2000

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

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.clinical.db import PooledConnection, create_pool  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

QUERY = "SELECT oid FROM pg_class WHERE relname = $1"  # an indexed lookup, no rows


async def one_round(pool: asyncpg.Pool, n: int, concurrency: int) -> tuple[list[float], float]:
    """Per-query wall times, and CPU seconds of this process for the round."""
    times: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await pool.fetchval(QUERY, "no-such-table")
            times.append(time.perf_counter() - started)

    cpu = time.process_time()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return times, time.process_time() - cpu


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="queries per pool and case")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="telemed-bench-"))
    data_dir.chmod(0o755)
    postgres = ls.start_postgres(data_dir / "postgres")
    try:
        kinds = {"asyncpg's reset": asyncpg.Connection, "no reset": PooledConnection}
        pools = {
            name: await create_pool(postgres.url, min_size=4, max_size=4, connection_class=cls)
            for name, cls in kinds.items()
        }
        for concurrency in (1, args.concurrency):
            times: dict[str, list[float]] = {name: [] for name in kinds}
            cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
            for _ in range(args.rounds):
                for name, pool in pools.items():
                    spent, seconds = await one_round(pool, args.n // args.rounds, concurrency)
                    times[name].extend(spent)
                    cpu[name] += seconds
            print(f"\n{args.n} queries per pool, {concurrency} at a time")
            print(f"{'(us)':<18}{'p50':>9}{'p95':>9}{'CPU/query':>11}")
            medians = []
            for name in kinds:
                us = [t * 1e6 for t in times[name]]
                medians.append(statistics.median(us))
                print(
                    f"{name:<18}{statistics.median(us):>9.0f}{percentile(us, 0.95):>9.0f}"
                    f"{cpu[name] / len(us) * 1e6:>11.0f}"
                )
            print(f"p50 no reset / reset: {medians[1] / medians[0]:.2f}")
        for pool in pools.values():
            await pool.close()
    finally:
        postgres.stop()


if __name__ == "__main__":
    asyncio.run(main())
