"""Join latency of 1:1 consultations with real Python WebRTC peers.

For N consultations in turn (each a real session: created, licence and consent
checked, started, room tokens issued), a physician and a patient connect, join, send
audio + video and receive each other.  Prints p50 / p95 / max of:
  - join request -> first decoded video frame from the other peer (per peer)
  - each signaling step (ack round trips, per peer)

Against a running system (`make run` in another terminal):
    .venv/bin/python bench/join_latency.py -n 20
Or with a stack of its own (Redis, SFU node, coturn, control plane on loopback):
    .venv/bin/python bench/join_latency.py -n 20 --start-stack
Direct against relayed through TURN (relay-only peers), alternating, same process:
    .venv/bin/python bench/join_latency.py -n 20 --start-stack --policy both

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.auth import TokenService  # noqa: E402
from controlplane.clinical.field_crypto import FieldCipher  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402
from telemed_client import MediaPeer, restrict_ice_host_addresses  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

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


@dataclass
class Target:
    url: str
    database_url: str
    tokens: TokenService
    cipher: FieldCipher


async def one_consultation(
    target: Target, samples: dict[str, list[float]], policy: str = "all"
) -> None:
    # A real session (licensed physician, consented patient, started): joining requires it.
    created = await create_demo_session(
        target.database_url,
        target.tokens,
        target.cipher,
        session_type="consultation",
        physician_id="dr-bench",
        patient_id="pt-bench",
        room_token_ttl=600,
    )
    room = created["session"]["roomId"]
    relay = "relay" if policy == "relay" else "all"
    doctor = MediaPeer(target.url, created["tokens"]["physician"], ice_transport_policy=relay)
    patient = MediaPeer(target.url, created["tokens"]["patient"], ice_transport_policy=relay)
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


def local_target() -> Target:
    data = ROOT / ".data" / "dev-env.json"
    env = {**(json.loads(data.read_text()) if data.exists() else {}), **os.environ}
    if not env.get("TELEMED_JWT_SECRET") or not env.get("DATABASE_URL"):
        raise SystemExit("no running `make run` found (.data/dev-env.json); or use --start-stack")
    return Target(
        url=env.get("TELEMED_URL", "http://127.0.0.1:8080"),
        database_url=env["DATABASE_URL"],
        tokens=TokenService(env["TELEMED_JWT_SECRET"], "telemed", "telemed-room", 600),
        cipher=FieldCipher.from_config(env["TELEMED_DATA_KEYS"]),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--consultations", type=int, default=10)
    parser.add_argument(
        "--warmup", type=int, default=1, help="consultations run first and not counted"
    )
    parser.add_argument("--start-stack", action="store_true")
    parser.add_argument(
        "--policy",
        choices=["all", "relay", "both"],
        default="all",
        help="ICE policy of the peers; both: direct and relay-only consultations alternate",
    )
    args = parser.parse_args()
    restrict_ice_host_addresses(["127.0.0.1"])

    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999) if args.start_stack else None
    try:
        target = stack_target(stack) if stack else local_target()

        policies = ["all", "relay"] if args.policy == "both" else [args.policy]
        names = ["join->first video frame", *STEPS]
        warm: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(args.warmup):
            for policy in policies:
                await one_consultation(target, warm, policy)
        samples = {policy: {k: [] for k in names} for policy in policies}
        wall = time.perf_counter()
        for _ in range(args.consultations):
            for policy in policies:
                await one_consultation(target, samples[policy], policy)
        wall = time.perf_counter() - wall

        runs = args.consultations * len(policies)
        print(f"{runs} consultations (2 peers each, audio+video both ways) against {target.url}")
        for policy in policies:
            label = "direct (host candidates)" if policy == "all" else "relay only (through TURN)"
            print(f"\n{label}")
            print(f"{'metric (ms)':<28}{'n':>5}{'p50':>10}{'p95':>10}{'max':>10}")
            for name, values in samples[policy].items():
                if not values:
                    continue
                ms = [v * 1000 for v in values]
                print(
                    f"{name:<28}{len(ms):>5}{statistics.median(ms):>10.1f}"
                    f"{percentile(ms, 0.95):>10.1f}{max(ms):>10.1f}"
                )
        if len(policies) == 2:
            first = "join->first video frame"
            ratio = statistics.median(samples["relay"][first]) / statistics.median(
                samples["all"][first]
            )
            print(f"\nrelay / direct, median join->first video frame: {ratio:.2f}")
        print(f"wall time: {wall:.1f} s ({wall / runs:.2f} s per consultation)")
    finally:
        if stack is not None:
            stack.stop()


def stack_target(stack: LocalStack) -> Target:
    """A control plane on the benchmark's own Redis, PostgreSQL and SFU node."""
    control = stack.start_control_plane(TELEMED_LOG_LEVEL="warning")
    return Target(
        control.url,
        stack.postgres.url,
        TokenService(stack.jwt_secret, "telemed", "telemed-room", 600),
        FieldCipher.from_config(stack.data_keys),
    )


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
