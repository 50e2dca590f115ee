"""Signaling at scale: many Socket.IO clients joined to consultations (no media)
on one control plane, then on two behind the same Redis.

On a stack of its own (Redis, PostgreSQL, one SFU node, coturn; control planes at
log level warning), N clients (a physician and a patient per consultation; sessions
written straight into PostgreSQL) connect and join, WAVE at a time; with two
instances the two members of a consultation are on different ones.  Then:
  - steady: every client sends one cheap event a second (getRouterRtpCapabilities
    and reportStats in turn, each client at its own phase) for --seconds;
  - burst: every client sends getRouterRtpCapabilities at the same moment.
Prints join and event latency (p50, p99, max, ms), error codes, the time for the
whole burst, and the control planes' memory per connection (RSS growth from
before the clients connected, divided by the connections).

The clients share one Python process with the benchmark: on a 2-core machine they
compete with the control planes for the CPU, so the latencies are an upper bound.

    .venv/bin/python bench/signaling_scale.py --clients 1000
    .venv/bin/python bench/signaling_scale.py --clients 300 --instances 1

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.join_latency import percentile  # noqa: E402
from controlplane.auth import TokenService  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.seeding import active_sessions_sql  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402

MEMBERS = [("dr", "physician"), ("pt", "patient")]
STATS = {"quality": "good", "streams": []}


def rss_kib(process: ls.ManagedProcess) -> int:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def outcome(ack: Any) -> str:
    if isinstance(ack, BaseException):
        return type(ack).__name__
    return ack["error"]["code"] if isinstance(ack, dict) and "error" in ack else "ok"


async def timed(
    client: socketio.AsyncClient, event: str, data: dict[str, Any]
) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        ack = await client.call(event, data, timeout=30)
    except Exception as exc:  # a timeout is a result here
        ack = exc
    return time.perf_counter() - started, outcome(ack)


def line(name: str, samples: list[tuple[float, str]]) -> str:
    ms = [seconds * 1000 for seconds, _ in samples]
    errors = Counter(code for _, code in samples if code != "ok")
    return (
        f"{name:<34}{len(ms):>6}{statistics.median(ms):>9.1f}{percentile(ms, 0.99):>9.1f}"
        f"{max(ms):>9.1f}   {dict(errors) or 'no errors'}"
    )


async def run(
    stack: LocalStack, controls: list[ls.ManagedProcess], args: argparse.Namespace
) -> None:
    rooms = [f"scale-{secrets.token_hex(5)}" for _ in range(args.clients // 2)]
    connection = await asyncpg.connect(stack.postgres.admin_url)
    try:
        await connection.execute(active_sessions_sql(rooms, MEMBERS))
    finally:
        await connection.close()
    tokens = TokenService(stack.jwt_secret, "telemed", "telemed-room", 3600)
    people = [(room, f"{who}-{room}", role) for room in rooms for who, role in MEMBERS]
    memory_before = [rss_kib(control) for control in controls]
    clients: list[socketio.AsyncClient] = []

    async def arrive(index: int, room: str, pid: str, role: str) -> tuple[float, str]:
        client = socketio.AsyncClient(reconnection=False)
        token = tokens.mint(participant_id=pid, role=role, room_id=room)
        url = controls[index % len(controls)].url
        await client.connect(url, auth={"token": token}, transports=["websocket"])
        clients.append(client)
        return await timed(client, "join", {"consultationId": room})

    try:
        joins: list[tuple[float, str]] = []
        wall = time.perf_counter()
        for start in range(0, len(people), args.wave):
            wave = people[start : start + args.wave]
            joins += await asyncio.gather(
                *(arrive(start + i, *person) for i, person in enumerate(wave))
            )
        join_wall = time.perf_counter() - wall
        await asyncio.sleep(1)
        memory = [rss_kib(c) - before for c, before in zip(controls, memory_before, strict=True)]

        steady: list[tuple[float, str]] = []

        async def paced(client: socketio.AsyncClient) -> None:
            await asyncio.sleep(random.random())  # its own phase within the second
            for second in range(args.seconds):
                tick = time.perf_counter()
                if second % 2:
                    steady.append(await timed(client, "reportStats", STATS))
                else:
                    steady.append(await timed(client, "getRouterRtpCapabilities", {}))
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))

        await asyncio.gather(*(paced(client) for client in clients))
        wall = time.perf_counter()
        burst = await asyncio.gather(
            *(timed(client, "getRouterRtpCapabilities", {}) for client in clients)
        )
        burst_wall = time.perf_counter() - wall
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)

    per_connection = sum(memory) / max(1, len(clients))
    print(
        f"\n{len(controls)} control plane(s), {len(clients)} clients in {len(rooms)} consultations"
    )
    print(f"{'(latency, ms)':<34}{'n':>6}{'p50':>9}{'p99':>9}{'max':>9}")
    print(line(f"join ({args.wave} at a time)", joins))
    print(line(f"cheap events, 1/s each ({args.seconds} s)", steady))
    print(line(f"burst of {len(clients)} at once", burst))
    print(f"all joins: {join_wall:.1f} s; the whole burst answered in {burst_wall * 1000:.0f} ms")
    print(
        f"control-plane memory per connection: {per_connection:.0f} KiB "
        f"(RSS growth {', '.join(f'{m / 1024:.1f} MiB' for m in memory)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", choices=["1", "2", "both"], default="both")
    args = parser.parse_args()
    counts = [1, 2] if args.instances == "both" else [int(args.instances)]
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999)
    try:
        for count in counts:
            controls = [
                stack.start_control_plane(TELEMED_LOG_LEVEL="warning") for _ in range(count)
            ]
            try:
                await run(stack, controls, args)
            finally:
                for control in controls:
                    control.stop()
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
