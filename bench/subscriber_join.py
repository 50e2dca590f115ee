"""Subscriber join -> first decoded video frame, the other side already sending.

For N consultations in turn (real sessions: licence, consent, start, room tokens;
call type emergency, so the patient goes straight in, no waiting room): the
physician joins and sends (tone + 640x480 pattern) first; once the SFU has its
video, the patient (connected beforehand, as a page is before it joins) joins
and only receives.  Two ways, alternating consultation by consultation:
  - ready: before the join the patient loads its device from the room's
    ``getRouterRtpCapabilities`` (as a page does while its user reads the
    consent screen; that round trip is printed, not counted) and joins with
    ``receive``: the ack carries its receive transport and consumers;
  - step by step: join, load the device from the ack, createTransport, consume.
Prints p50 / p95 / max of the patient's:
  - join request -> first decoded video frame (the figure the issue sets: p50
    <= 70 ms, p95 <= 100 ms on loopback)
  - join request -> ICE+DTLS connected on its receive transport
  - each signaling step's round trip (join, deviceLoad, createTransport,
    consume, resumeConsumer, connectTransport)

    .venv/bin/python bench/subscriber_join.py -n 20 --start-stack
    .venv/bin/python bench/subscriber_join.py -n 20     # against `make run`

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.join_latency import Target, local_target, stack_target  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import start_local_stack  # noqa: E402
from telemed_client import MediaPeer, restrict_ice_host_addresses  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

FIRST_FRAME = "join -> first video frame"
STEPS = ["join", "deviceLoad", "createTransport", "consume", "connectTransport", "resumeConsumer"]


async def connected_at(peer: MediaPeer) -> float:
    """When the receive transport's ICE and DTLS are up (monotonic)."""
    while True:
        states = [pc.connectionState for pc in peer.peer_connections()]
        if states and all(state == "connected" for state in states):
            return time.monotonic()
        await asyncio.sleep(0.002)


async def one(target: Target, samples: dict[str, list[float]], ready: bool) -> None:
    created = await create_demo_session(
        target.database_url,
        target.tokens,
        target.cipher,
        session_type="emergency",
        physician_id="dr-sub",
        patient_id="pt-sub",
        room_token_ttl=600,
    )
    room = created["session"]["roomId"]
    doctor = MediaPeer(target.url, created["tokens"]["physician"], video_size=(640, 480))
    patient = MediaPeer(
        target.url, created["tokens"]["patient"], send_audio=False, send_video=False
    )
    try:
        await doctor.connect()
        await doctor.join(room)
        await doctor.start_sending()
        await asyncio.sleep(1.0)  # the SFU has the physician's video (and key frames)
        await patient.connect()
        if ready:  # as a page does before its user joins: the device is loaded
            started = time.perf_counter()
            assert await patient.load_device()
            samples["getRouterRtpCapabilities (before join)"].append(time.perf_counter() - started)
        await patient.join(room, receive=ready)
        connected = asyncio.create_task(connected_at(patient))
        await patient.start_receiving()
        track = await patient.wait_for_frames("dr-sub", "video", count=1, timeout=20)
        assert track.first_frame_at is not None and patient.join_started_at is not None
        samples[FIRST_FRAME].append(track.first_frame_at - patient.join_started_at)
        samples["join -> transport connected"].append(
            await asyncio.wait_for(connected, 10) - patient.join_started_at
        )
        for step in STEPS:
            if step in patient.timings:
                before = ready and step == "deviceLoad"
                samples[f"{step} (before join)" if before else step].append(patient.timings[step])
        await asyncio.gather(doctor.leave(), patient.leave())
    finally:
        await asyncio.gather(doctor.close(), patient.close())


def print_table(title: str, samples: dict[str, list[float]]) -> None:
    print(title)
    print(f"{'(ms)':<40}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}")
    for name, values in samples.items():
        if values:
            ms = [v * 1000 for v in values]
            print(
                f"{name:<40}{len(ms):>5}{statistics.median(ms):>9.1f}"
                f"{percentile(ms, 0.95):>9.1f}{max(ms):>9.1f}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--consultations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--start-stack", action="store_true")
    parser.add_argument("--rtc-port", type=int, default=47000, help="first of 1,000 SFU ports")
    args = parser.parse_args()
    restrict_ice_host_addresses(["127.0.0.1"])
    stack = (
        start_local_stack(rtc_min_port=args.rtc_port, rtc_max_port=args.rtc_port + 999)
        if args.start_stack
        else None
    )
    try:
        target = stack_target(stack) if stack else local_target()
        ways = {"ready": True, "step by step": False}
        samples: dict[str, dict[str, list[float]]] = {way: defaultdict(list) for way in ways}
        for _ in range(args.warmup):
            for ready in ways.values():
                await one(target, defaultdict(list), ready)
        # Alternating, so both ways see the same machine.
        for _ in range(args.consultations):
            for way, ready in ways.items():
                await one(target, samples[way], ready)
        print(f"{args.consultations} subscribers joining a call already sending ({target.url})")
        for way, figures in samples.items():
            print_table(f"-- {way}", figures)
        ratio = statistics.median(samples["ready"][FIRST_FRAME]) / statistics.median(
            samples["step by step"][FIRST_FRAME]
        )
        print(f"{FIRST_FRAME} p50, ready / step by step: {ratio:.2f}")
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
