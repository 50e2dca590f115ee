"""ICE connect time of the Python client's agent (aioice), with and without
telemed_client's early return (telemed_client/network.py: connect() returns once
the check list is completed, not at aioice's next 20 ms pacing tick).

Two aioice agents on loopback, the controlling one with a second, lower-priority
remote candidate that answers nothing (as a relay candidate offered by TURN is a
second pair to an ICE-lite SFU).  N connects each way, alternating; prints p50 /
p95 / max of the controlling agent's connect() and the ratio of the medians.

    .venv/bin/python bench/ice_connect.py -n 50

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

import aioice

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telemed_client import network  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402


async def loopback_agents(silent_port: int) -> tuple[aioice.Connection, aioice.Connection]:
    """A controlling and a controlled agent on 127.0.0.1 with each other's
    candidates; the controlling one also has a silent candidate at ``silent_port``."""
    network.restrict_ice_host_addresses(["127.0.0.1"])
    controlling = aioice.Connection(ice_controlling=True, components=1)
    controlled = aioice.Connection(ice_controlling=False, components=1)
    await asyncio.gather(controlling.gather_candidates(), controlled.gather_candidates())
    for local, remote in ((controlling, controlled), (controlled, controlling)):
        local.remote_username = remote.local_username
        local.remote_password = remote.local_password
        for candidate in remote.local_candidates:
            await local.add_remote_candidate(candidate)
    silent = aioice.Candidate(
        foundation="silent",
        component=1,
        transport="udp",
        priority=1,
        host="127.0.0.1",
        port=silent_port,
        type="host",
    )
    await controlling.add_remote_candidate(silent)
    for local in (controlling, controlled):
        await local.add_remote_candidate(None)
    return controlling, controlled


async def connect_once(silent_port: int) -> float:
    controlling, controlled = await loopback_agents(silent_port)
    started = time.perf_counter()
    controlled_task = asyncio.ensure_future(controlled.connect())
    await controlling.connect()
    elapsed = time.perf_counter() - started
    await controlled_task
    await asyncio.gather(controlling.close(), controlled.close())
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--runs", type=int, default=50)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    silent_port = sock.getsockname()[1]
    ways = {
        "early return (telemed_client)": network._connect_when_completed,
        "aioice as it comes": network._original_connect,
    }
    samples: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for _ in range(args.runs):
            for way, connect in ways.items():
                aioice.Connection.connect = connect  # type: ignore[method-assign]
                samples[way].append(await connect_once(silent_port) * 1000)
    finally:
        aioice.Connection.connect = network._connect_when_completed  # type: ignore[method-assign]
        sock.close()
    print(f"aioice connect() on loopback, a host pair and a silent pair, {args.runs} runs each")
    print(f"{'(ms)':<32}{'p50':>8}{'p95':>8}{'max':>8}")
    for way, ms in samples.items():
        print(f"{way:<32}{statistics.median(ms):>8.1f}{percentile(ms, 0.95):>8.1f}{max(ms):>8.1f}")
    early, stock = (statistics.median(v) for v in samples.values())
    print(f"p50 ratio, early return / aioice: {early / stock:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
