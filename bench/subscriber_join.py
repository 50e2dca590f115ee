"""Subscriber join -> first decoded video frame, the other side already sending.

For N consultations in turn (real sessions: licence, consent, start, room tokens;
call type emergency, so the patient goes straight in, no waiting room): the
physician joins and sends (tone + 640x480 pattern) first; once the SFU has its
video, the patient (connected beforehand, as a page is before it joins) joins
and only receives.  Prints p50 / p95 / max of the patient's:
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.join_latency import Target, local_target, stack_target  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import start_local_stack  # noqa: E402
from telemed_client import MediaPeer, restrict_ice_host_addresses  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

STEPS = ["join", "deviceLoad", "createTransport", "consume", "connectTransport", "resumeConsumer"]


async def connected_at(peer: MediaPeer) -> float:
    """When the receive transport's ICE and DTLS are up (monotonic)."""
    while True:
        states = [pc.connectionState for pc in peer.peer_connections()]
        if states and all(state == "connected" for state in states):
            return time.monotonic()
        await asyncio.sleep(0.002)


async def one(target: Target, samples: dict[str, list[float]]) -> None:
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
        await patient.join(room)
        connected = asyncio.create_task(connected_at(patient))
        await patient.start_receiving()
        track = await patient.wait_for_frames("dr-sub", "video", count=1, timeout=20)
        assert track.first_frame_at is not None and patient.join_started_at is not None
        samples["join -> first video frame"].append(track.first_frame_at - patient.join_started_at)
        samples["join -> transport connected"].append(
            await asyncio.wait_for(connected, 10) - patient.join_started_at
        )
        for step in STEPS:
            if step in patient.timings:
                samples[step].append(patient.timings[step])
        await asyncio.gather(doctor.leave(), patient.leave())
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--consultations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--start-stack", action="store_true")
    args = parser.parse_args()
    restrict_ice_host_addresses(["127.0.0.1"])
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999) if args.start_stack else None
    try:
        target = stack_target(stack) if stack else local_target()
        names = ["join -> first video frame", "join -> transport connected", *STEPS]
        for _ in range(args.warmup):
            await one(target, {name: [] for name in names})
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.consultations):
            await one(target, samples)
        print(f"{args.consultations} subscribers joining a call already sending ({target.url})")
        print(f"{'(ms)':<32}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}")
        for name, values in samples.items():
            if values:
                ms = [v * 1000 for v in values]
                print(
                    f"{name:<32}{len(ms):>5}{statistics.median(ms):>9.1f}"
                    f"{percentile(ms, 0.95):>9.1f}{max(ms):>9.1f}"
                )
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
