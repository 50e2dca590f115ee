"""How many 1:1 visits one mediasoup worker carries: CPU, loss and RTT for growing N.

On a stack of its own (Redis, PostgreSQL, one SFU node with ONE mediasoup worker,
one control plane at log level warning), for each N in --steps (visits are added
to those already running):
  - the consultation is real for the control plane: an active session, its
    physician and patient connected over Socket.IO and joined (so the control
    plane made the room's router on the worker), each sending one cheap event
    (getRouterRtpCapabilities) a second (telemed_client.loadtest, signaling only);
  - the media is replayed into that router: each participant sends 640x480 VP8
    at about 800 kbps (30 fps, a key frame every 2 s) and Opus at 64 kbps over a
    PlainTransport, and receives the other's audio and video from consumers on a
    second PlainTransport.  The packets were encoded ONCE by ffmpeg (cached) and
    are sent with fresh SSRCs, sequence numbers and timestamps (bench/rtp_replay.py);
    nothing is encoded or decoded per stream.  What is real: the control plane's
    rooms, the SFU node, the mediasoup worker forwarding every packet, its RTCP
    (sender reports, our receiver reports, the RTT it computes).  What is not: no
    ICE, DTLS or SRTP on these transports (WebRTC transports add SRTP's per-packet
    cost; so the figure is an upper bound for WebRTC visits), the senders ignore
    NACK and PLI, and the control plane samples no stats for the replayed media
    (its producers are not in the room state; bench/sampling_cost.py measures
    sampling).
Printed per step, over --window seconds after --settle: the worker's CPU (share
of its core; pinned to CPU 1, everything else to CPU 0, unless --no-pin), the SFU
node's Node.js process, the control plane (total and per visit), the generator
itself, packets the receivers expected and lost, and the consumers' RTT (mediasoup's
getStats, from RTCP).  Then the largest N held under 80% of the worker's core
with under 1% loss.

    .venv/bin/python bench/capacity.py
    .venv/bin/python bench/capacity.py --steps 10,50,100,150 --window 15

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rtp_replay import AUDIO_PT, VIDEO_PT, Replayer, Sink, Track, capture  # noqa: E402
from bench.sampling_cost import cpu_seconds  # noqa: E402
from controlplane.auth import TokenService  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.seeding import active_sessions_sql  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402
from controlplane.placement.sfu_client import SfuClient  # noqa: E402
from telemed_client.loadtest import Seat, percentile, run_load  # noqa: E402

MEMBERS = [("dr", "physician"), ("pt", "patient")]
WORKER_CORE, OTHER_CORE = 1, 0


def rtp_parameters(kind: str, ssrc: int) -> dict[str, Any]:
    codec = (
        {"mimeType": "video/VP8", "payloadType": VIDEO_PT, "clockRate": 90000}
        if kind == "video"
        else {"mimeType": "audio/opus", "payloadType": AUDIO_PT, "clockRate": 48000, "channels": 2}
    )
    return {
        "codecs": [{**codec, "rtcpFeedback": []}],
        "encodings": [{"ssrc": ssrc}],
        "headerExtensions": [],
        "rtcp": {"cname": f"bench-{ssrc}", "reducedSize": True},
    }


@dataclass
class Visit:
    room: str
    router_id: str
    consumers: list[str]


class Bench:
    def __init__(self, stack: LocalStack, control: ls.ManagedProcess, tracks: dict[str, Track]):
        self.stack = stack
        self.control = control
        self.tracks = tracks
        self.rpc = SfuClient(
            stack.sfu.env.get("SFU_NODE_ID", ""), stack.sfu.url, stack.sfu_secret, timeout=20
        )
        self.redis = aioredis.from_url(stack.redis.url)
        self.tokens = TokenService(stack.jwt_secret, "telemed", "telemed-room", 3600)
        self.replayer = Replayer()
        self.sink = Sink()
        self.visits: list[Visit] = []
        self.loads: list[asyncio.Task[Any]] = []
        self.stop_load = asyncio.Event()
        self.worker_pid = 0

    async def add_visits(self, count: int) -> None:
        rooms = [f"cap-{secrets.token_hex(5)}" for _ in range(count)]
        connection = await asyncpg.connect(self.stack.postgres.admin_url)
        try:
            await connection.execute(active_sessions_sql(rooms, MEMBERS))
        finally:
            await connection.close()
        seats = [
            [
                Seat(
                    room,
                    f"{who}-{room}",
                    role,
                    self.tokens.mint(participant_id=f"{who}-{room}", role=role, room_id=room),
                )
                for who, role in MEMBERS
            ]
            for room in rooms
        ]
        joined = asyncio.Event()

        async def on_joined() -> None:
            joined.set()

        # Held until the benchmark ends (seconds: long), events at 1/s each.
        task = asyncio.create_task(
            run_load(
                self.control.url, seats, seconds=24 * 3600, media=False, wave=25, joined=on_joined
            )
        )
        self.loads.append(task)
        await asyncio.wait(
            [asyncio.create_task(joined.wait()), task], return_when=asyncio.FIRST_COMPLETED
        )
        if task.done():
            raise RuntimeError(f"the signaling load ended early: {task.result().errors}")
        for room in rooms:
            router_id = await self.redis.hget(f"telemed:room:{{{room}}}", "routerId")
            if not router_id:
                raise RuntimeError(f"room {room} has no router")
            self.visits.append(await self.media_for(room, router_id.decode()))

    async def media_for(self, room: str, router_id: str) -> Visit:
        caps = (await self.rpc.request("getRouterRtpCapabilities", {"routerId": router_id}))[
            "rtpCapabilities"
        ]
        produced: list[list[str]] = []
        for _member in MEMBERS:
            send = await self.rpc.request(
                "createPlainTransport", {"routerId": router_id, "comedia": True}
            )
            ids = []
            for kind in ("audio", "video"):
                ssrc = random.getrandbits(31) | 1
                made = await self.rpc.request(
                    "produce",
                    {
                        "transportId": send["transportId"],
                        "kind": kind,
                        "rtpParameters": rtp_parameters(kind, ssrc),
                        "appData": {"source": "camera" if kind == "video" else "mic"},
                    },
                )
                ids.append(made["producerId"])
                phase = random.uniform(0, self.tracks[kind].period)
                self.replayer.add(self.tracks[kind], ssrc, (send["ip"], send["port"]), phase)
            produced.append(ids)
        consumers = []
        for k in range(len(MEMBERS)):
            recv = await self.rpc.request("createPlainTransport", {"routerId": router_id})
            await self.rpc.request(
                "connectPlainTransport",
                {
                    "transportId": recv["transportId"],
                    "ip": self.sink.address[0],
                    "port": self.sink.address[1],
                },
            )
            for producer_id in produced[1 - k]:  # the other participant's
                made = await self.rpc.request(
                    "consume",
                    {
                        "transportId": recv["transportId"],
                        "producerId": producer_id,
                        "rtpCapabilities": caps,
                    },
                )
                self.sink.expect(int(made["rtpParameters"]["encodings"][0]["ssrc"]))
                await self.rpc.request("resumeConsumer", {"consumerId": made["consumerId"]})
                consumers.append(made["consumerId"])
        return Visit(room, router_id, consumers)

    async def consumer_rtts(self) -> list[float]:
        rtts: list[float] = []
        for visit in self.visits:
            for consumer_id in visit.consumers:
                stats = (await self.rpc.request("getConsumerStats", {"consumerId": consumer_id}))[
                    "stats"
                ]
                for entry in stats:
                    if entry.get("type") == "outbound-rtp" and entry.get("roundTripTime"):
                        rtts.append(float(entry["roundTripTime"]))
        return rtts

    async def measure(self, settle: float, window: float) -> dict[str, float]:
        await asyncio.sleep(settle)
        self.sink.reset()
        pids = {
            "worker": self.worker_pid,
            "node": self.stack.sfu.proc.pid,
            "control": self.control.proc.pid,
            "generator": os.getpid(),
        }
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        other_before = core_busy(OTHER_CORE)
        wall = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - wall
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        other_after = core_busy(OTHER_CORE)
        expected = sum(r.expected() for r in self.sink.streams.values())
        lost = sum(r.lost() for r in self.sink.streams.values())
        rtts = await self.consumer_rtts()
        return {
            **{name: (after[name] - before[name]) / elapsed for name in pids},
            # CPU 0: everything but the worker when pinned (generator, control plane, ...)
            "other_core": (other_after[0] - other_before[0])
            / max(1, other_after[1] - other_before[1]),
            "expected": expected,
            "lost": lost,
            "loss": lost / expected if expected else 0.0,
            "rtt_p50": percentile(rtts, 0.5),
            "rtt_p95": percentile(rtts, 0.95),
            "rtt_n": len(rtts),
            "silent": sum(1 for r in self.sink.streams.values() if r.packets == 0),
        }

    async def close(self) -> None:
        self.replayer.stop()
        self.sink.stop()
        for task in self.loads:
            task.cancel()
        await asyncio.gather(*self.loads, return_exceptions=True)
        await self.rpc.close()
        await self.redis.aclose()


def core_busy(core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one CPU since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            return sum(values) - idle, sum(values)
    return 0, 1


def pin(pids: list[int], core: int) -> None:
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread gone
                os.sched_setaffinity(int(task.name), {core})


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="10,25,50,75,100,125,150")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--settle", type=float, default=4.0)
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to Linux")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    tracks = capture()
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=48999, num_workers=1)
    bench: Bench | None = None
    try:
        control = stack.start_control_plane(TELEMED_LOG_LEVEL="warning")
        bench = Bench(stack, control, tracks)
        info = await bench.rpc.request("getWorkerResourceUsage", {})
        bench.worker_pid = int(info["workers"][0]["pid"])
        pin_cpu = not args.no_pin and (os.cpu_count() or 1) >= 2
        if pin_cpu:
            pin([bench.worker_pid], WORKER_CORE)
            pin(
                [os.getpid(), stack.sfu.proc.pid, control.proc.pid, stack.redis.proc.pid],
                OTHER_CORE,
            )
        bench.replayer.start()
        bench.sink.start()
        print(
            f"replayed media: video {tracks['video'].bitrate / 1000:.0f} kbps "
            f"({len(tracks['video'].packets) / tracks['video'].period:.0f} packets/s), "
            f"audio {tracks['audio'].bitrate / 1000:.0f} kbps, per direction per participant; "
            f"one mediasoup worker{' pinned to CPU 1' if pin_cpu else ''}"
        )
        header = (
            f"{'visits':>6}{'consumers':>10}{'worker':>8}{'node':>7}{'control':>9}"
            f"{'per visit':>10}{'generator':>10}{'expected':>10}{'loss':>8}"
            f"{'RTT p50':>9}{'RTT p95':>9}{'CPU 0':>7}"
        )
        print(header)
        held = 0
        limit = ""
        for n in steps:
            await bench.add_visits(n - len(bench.visits))
            if pin_cpu:  # the control plane's and node's new threads, the generator's
                pin([os.getpid(), stack.sfu.proc.pid, control.proc.pid], OTHER_CORE)
            r = await bench.measure(args.settle, args.window)
            consumers = sum(len(v.consumers) for v in bench.visits)
            print(
                f"{n:>6}{consumers:>10}{r['worker']:>8.1%}{r['node']:>7.1%}{r['control']:>9.1%}"
                f"{r['control'] / n:>10.2%}{r['generator']:>10.1%}{r['expected']:>10.0f}"
                f"{r['loss']:>8.2%}{r['rtt_p50']:>7.1f}ms{r['rtt_p95']:>7.1f}ms"
                f"{r['other_core']:>7.0%}"
                + (f"  ({r['silent']:.0f} streams silent)" if r["silent"] else "")
            )
            if r["worker"] < 0.8 and r["loss"] < 0.01 and not r["silent"]:
                held = n
            else:
                if r["worker"] < 0.8 and pin_cpu and r["other_core"] > 0.9:
                    limit = "CPU 0 (generator and control plane) was full, not the worker"
                break
        print(
            f"largest N held under 80% of the worker's core with under 1% loss: {held} visits "
            f"({held * 4} consumers; mediasoup's guide: about 500 consumers per worker)"
            + (f"; the next step failed because {limit}" if limit else "")
        )
    finally:
        if bench is not None:
            await bench.close()
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
