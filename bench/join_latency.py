"""Join latency of 1:1 consultations with real Python WebRTC peers.

For N consultations in turn, a physician and a patient connect, join, send
audio + video and receive each other.  Prints p50 / p95 / max of:
  - join request -> first decoded video frame from the other peer (per peer)
  - each signaling step (ack round trips, per peer)

Against a running system (`make run` in another terminal):
    .venv/bin/python bench/join_latency.py -n 20
Or with a stack of its own (Redis, SFU node, control plane on loopback):
    .venv/bin/python bench/join_latency.py -n 20 --start-stack

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane import local_services as ls  # noqa: E402
from controlplane.auth import TokenService  # noqa: E402
from controlplane.python_peer import MediaPeer, restrict_ice_host_addresses  # noqa: E402

STEPS = [
    "connect",
    "join",
    "deviceLoad",
    "createTransport",
    "connectTransport",
    "produce",
    "consume",
    "resumeConsumer",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def one_consultation(url: str, tokens: TokenService, samples: dict[str, list[float]]) -> None:
    room = f"bench-{secrets.token_hex(5)}"
    doctor = MediaPeer(
        url, tokens.mint(participant_id="dr-bench", role="physician", consultation_id=room)
    )
    patient = MediaPeer(
        url, tokens.mint(participant_id="pt-bench", role="patient", consultation_id=room)
    )
    try:

        async def run(peer: MediaPeer) -> None:
            await peer.connect()
            await peer.join(room)
            await peer.start_sending()
            await peer.start_receiving()

        await asyncio.gather(run(doctor), run(patient))
        for receiver, sender in ((doctor, "pt-bench"), (patient, "dr-bench")):
            track = await receiver.wait_for_frames(sender, "video", count=1, timeout=20)
            assert track.first_frame_at is not None and receiver.join_started_at is not None
            samples["join->first video frame"].append(
                track.first_frame_at - receiver.join_started_at
            )
            for step in STEPS:
                if step in receiver.timings:
                    samples[step].append(receiver.timings[step])
        await asyncio.gather(doctor.leave(), patient.leave())
    finally:
        await asyncio.gather(doctor.close(), patient.close())


def local_target() -> tuple[str, str]:
    data = ROOT / ".data" / "dev-env.json"
    env = json.loads(data.read_text()) if data.exists() else {}
    secret = os.environ.get("TELEMED_JWT_SECRET") or env.get("TELEMED_JWT_SECRET", "")
    url = os.environ.get("TELEMED_URL", "http://127.0.0.1:8080")
    if not secret:
        raise SystemExit(
            "no TELEMED_JWT_SECRET and no .data/dev-env.json: start `make run` or use --start-stack"
        )
    return url, secret


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--consultations", type=int, default=10)
    parser.add_argument(
        "--warmup", type=int, default=1, help="consultations run first and not counted"
    )
    parser.add_argument("--start-stack", action="store_true")
    args = parser.parse_args()
    restrict_ice_host_addresses(["127.0.0.1"])

    started: list[ls.ManagedProcess] = []
    try:
        if args.start_stack:
            data_dir = Path(tempfile.mkdtemp(prefix="telemed-bench-"))
            secret, sfu_secret = secrets.token_urlsafe(48), secrets.token_urlsafe(24)
            redis = ls.start_redis(data_dir / "redis")
            started.append(redis)
            started.append(
                ls.start_sfu_node(
                    data_dir,
                    redis_url=redis.url,
                    secret=sfu_secret,
                    rtc_min_port=47000,
                    rtc_max_port=47999,
                )
            )
            control = ls.start_control_plane(
                data_dir,
                {
                    "REDIS_URL": redis.url,
                    "SFU_SECRET": sfu_secret,
                    "TELEMED_JWT_SECRET": secret,
                    "TELEMED_LOG_LEVEL": "warning",
                },
            )
            started.append(control)
            url = control.url
        else:
            url, secret = local_target()
        tokens = TokenService(secret, "telemed", "telemed-room", 600)

        warm: dict[str, list[float]] = {k: [] for k in ["join->first video frame", *STEPS]}
        for _ in range(args.warmup):
            await one_consultation(url, tokens, warm)
        samples: dict[str, list[float]] = {k: [] for k in ["join->first video frame", *STEPS]}
        wall = time.perf_counter()
        for _ in range(args.consultations):
            await one_consultation(url, tokens, samples)
        wall = time.perf_counter() - wall

        print(
            f"{args.consultations} consultations (2 peers each, audio+video both ways)",
            f"against {url}",
        )
        print(f"{'metric (ms)':<28}{'n':>5}{'p50':>10}{'p95':>10}{'max':>10}")
        for name, values in samples.items():
            if not values:
                continue
            ms = [v * 1000 for v in values]
            print(
                f"{name:<28}{len(ms):>5}{statistics.median(ms):>10.1f}{percentile(ms, 0.95):>10.1f}"
                f"{max(ms):>10.1f}"
            )
        print(f"wall time: {wall:.1f} s ({wall / args.consultations:.2f} s per consultation)")
    finally:
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
