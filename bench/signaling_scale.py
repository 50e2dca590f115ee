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
    .venv/bin/python bench/signaling_scale.py --instances 1 --stock   # and the baseline

With --stock, each run is made twice: first with the control plane's runtime as
shipped (uvloop, the tuned garbage collector: controlplane/runtime.py), then with
the standard asyncio loop and CPython's collector as it comes
(TELEMED_EVENT_LOOP=asyncio TELEMED_GC_YOUNG_THRESHOLD=0), and the ratio of the
cheap events' p99 is printed.  The Socket.IO packet encoding (signaling/wire.py)
is the same in both; its own cost per ack is printed first, against
python-socketio's default packet, on real router capabilities.

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import timeit
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import socketio
from socketio import packet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.recording import cpu_seconds  # noqa: E402
from controlplane.auth import TokenService  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.seeding import active_sessions_sql  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402
from signaling.wire import WirePacket  # noqa: E402
from telemed_client.loadtest import Report, Seat, percentile, run_load  # noqa: E402

MEMBERS = [("dr", "physician"), ("pt", "patient")]


def rss_kib(process: ls.ManagedProcess) -> int:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


STOCK_RUNTIME = {"TELEMED_EVENT_LOOP": "asyncio", "TELEMED_GC_YOUNG_THRESHOLD": "0"}


def ack_encoding(capabilities: dict[str, Any]) -> str:
    """CPU per getRouterRtpCapabilities ack, python-socketio's default packet
    against signaling.wire's, on these capabilities (median of 5 x 500)."""
    ack = [capabilities]
    figures = []
    for packet_class in (packet.Packet, WirePacket):
        runs = [
            timeit.timeit(lambda c=packet_class: c(packet.ACK, data=ack, id=7).encode(), number=500)
            / 500
            for _ in range(5)
        ]
        figures.append(statistics.median(runs) * 1e6)
    size = len(WirePacket(packet.ACK, data=ack, id=7).encode())
    return (
        f"encoding one capabilities ack ({size} bytes): default packet {figures[0]:.0f} us, "
        f"signaling.wire {figures[1]:.0f} us ({figures[0] / figures[1]:.0f}x less CPU)"
    )


async def capabilities_of(url: str, seat: Seat) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": seat.token}, transports=["websocket"])
    try:
        ack = await client.call("join", {"consultationId": seat.room}, timeout=10)
        assert "error" not in ack, ack
        caps = await client.call("getRouterRtpCapabilities", {}, timeout=10)
        result: dict[str, Any] = caps["routerRtpCapabilities"]
        return result
    finally:
        await client.disconnect()


async def command_calls(redis: aioredis.Redis) -> Counter[str]:
    """Redis's count of calls per command (INFO commandstats)."""
    stats = await redis.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    )


async def run(
    stack: LocalStack, controls: list[ls.ManagedProcess], args: argparse.Namespace
) -> Report:
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
    if args.print_encoding:
        args.print_encoding = False
        probe = seats.pop()[0]  # a physician: in the room at once
        print(ack_encoding(await capabilities_of(controls[0].url, probe)))
    memory_before = [rss_kib(control) for control in controls]
    memory: list[int] = []
    redis = aioredis.from_url(stack.redis.url)
    by_command_before = await command_calls(redis)
    cpu_before = sum(cpu_seconds(c.proc.pid) for c in controls)
    join_cpu: list[float] = []
    by_command: Counter[str] = Counter()

    async def measure_joined() -> None:
        # Everyone connected, joined and (patients) admitted: the control planes'
        # CPU and the Redis commands for that, before the steady events start.
        join_cpu.append(sum(cpu_seconds(c.proc.pid) for c in controls) - cpu_before)
        by_command.update(await command_calls(redis))
        by_command.subtract(by_command_before)
        await asyncio.sleep(1)
        memory.extend(
            rss_kib(c) - before for c, before in zip(controls, memory_before, strict=True)
        )

    try:
        report = await run_load(
            controls[0].url,
            seats,
            seconds=args.seconds,
            media=False,
            wave=args.wave,
            burst=True,
            joined=measure_joined,
        )
    finally:
        await redis.aclose()
    connections = len(report.joins)
    print(f"\n{len(controls)} control plane(s), joins {args.wave} at a time")
    print("\n".join(report.lines()))
    print(
        "per participant (connect, join, admission): control-plane CPU "
        f"{join_cpu[0] / max(1, connections) * 1000:.2f} ms, "
        f"Redis commands {by_command.total() / max(1, connections):.1f} (all processes)"
    )
    print(
        "  by command: "
        + ", ".join(
            f"{name} {calls / max(1, connections):.1f}"
            for name, calls in by_command.most_common()
            if calls / max(1, connections) >= 0.05
        )
    )
    print(
        f"control-plane memory per connection: {sum(memory) / max(1, connections):.0f} KiB "
        f"(RSS growth {', '.join(f'{m / 1024:.1f} MiB' for m in memory)})"
    )
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", choices=["1", "2", "both"], default="both")
    parser.add_argument("--stock", action="store_true", help="also run the stock runtime")
    args = parser.parse_args()
    args.print_encoding = True
    counts = [1, 2] if args.instances == "both" else [int(args.instances)]
    runtimes = [("shipped", {}), ("stock", STOCK_RUNTIME)] if args.stock else [("shipped", {})]
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999)
    try:
        for count in counts:
            p99: dict[str, float] = {}
            for name, runtime in runtimes:
                print(f"\n== {name} runtime {runtime or '(uvloop, tuned GC)'}")
                controls = [
                    stack.start_control_plane(TELEMED_LOG_LEVEL="warning", **runtime)
                    for _ in range(count)
                ]
                try:
                    report = await run(stack, controls, args)
                    p99[name] = percentile(report.events, 0.99) * 1000
                finally:
                    for control in controls:
                        control.stop()
            if len(p99) == 2:
                shipped, stock = p99["shipped"], p99["stock"]
                print(
                    f"\n{count} control plane(s): cheap events p99 {shipped:.1f} ms shipped, "
                    f"{stock:.1f} ms stock: {stock / max(shipped, 1e-3):.1f}x"
                )
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
