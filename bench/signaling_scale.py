"""Signaling at scale: many Socket.IO clients joined to consultations (no media)
on one control plane, then on two behind the same Redis.

On a stack of its own (Redis, PostgreSQL, one SFU node, coturn; control planes at
log level warning), N clients (a physician and a patient per consultation; sessions
written straight into PostgreSQL) connect and join, WAVE at a time (physicians
first; each admits its patient from the waiting room); with two instances the two
members of a consultation are on different ones.  Then:
  - steady: every client sends one getRouterRtpCapabilities a second, each at its
    own phase, for --seconds;
  - burst: every client sends getRouterRtpCapabilities at the same moment.
Prints join and event latency (p50, p99, max, ms), error codes, the time for the
whole burst, and the control planes' memory per connection (RSS growth from
before the clients connected, divided by the connections).

The clients are telemed_client.loadtest's (what `telemed loadtest --signaling-only`
runs); they share one Python process with the benchmark: on a 2-core machine they
compete with the control planes for the CPU, so the latencies are an upper bound.

    .venv/bin/python bench/signaling_scale.py --clients 1000
    .venv/bin/python bench/signaling_scale.py --clients 300 --instances 1

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.auth import TokenService  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.seeding import active_sessions_sql  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402
from telemed_client.loadtest import Seat, run_load  # noqa: E402

MEMBERS = [("dr", "physician"), ("pt", "patient")]


def rss_kib(process: ls.ManagedProcess) -> int:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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
    seats = [
        [
            Seat(
                room,
                f"{who}-{room}",
                role,
                tokens.mint(participant_id=f"{who}-{room}", role=role, room_id=room),
                url=controls[k % len(controls)].url,  # a room's two members on two instances
            )
            for k, (who, role) in enumerate(MEMBERS)
        ]
        for room in rooms
    ]
    memory_before = [rss_kib(control) for control in controls]
    memory: list[int] = []

    async def measure_memory() -> None:
        await asyncio.sleep(1)
        memory.extend(
            rss_kib(c) - before for c, before in zip(controls, memory_before, strict=True)
        )

    report = await run_load(
        controls[0].url,
        seats,
        seconds=args.seconds,
        media=False,
        wave=args.wave,
        burst=True,
        joined=measure_memory,
    )
    connections = len(report.joins)
    print(f"\n{len(controls)} control plane(s), joins {args.wave} at a time")
    print("\n".join(report.lines()))
    print(
        f"control-plane memory per connection: {sum(memory) / max(1, connections):.0f} KiB "
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
