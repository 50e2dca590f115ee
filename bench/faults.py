"""What a fault costs a call in progress, measured with real Python WebRTC peers.

For each fault type, R times: a real 1:1 session (created, licence and consent
checked, started), both peers sending and receiving video; then the fault is
injected for real and the benchmark records
  - the media gap: the longest wait between two decoded video frames, on either
    side, from just before the fault until 1 s after signaling works again;
  - signaling back: from the fault until the first pause/resume of a producer
    that the server acknowledges (retried every 50 ms).
Prints median / p95 / max per fault type.  Always on a stack of its own
(Redis, PostgreSQL, one SFU node, one control plane on a fixed port, all on
loopback), never on `make run`'s.

    .venv/bin/python bench/faults.py -r 5
    .venv/bin/python bench/faults.py -r 10 --faults signaling_blip,control_plane_kill

Faults: signaling_blip (ss -K on the control plane's port), control_plane_kill
(kill -9, then started again), control_plane_sigterm (drain, then started again),
rpc_blip (ss -K on the SFU node's RPC port), redis_pause (SIGSTOP for 3 s),
redis_restart (kill -9 and a new, empty Redis on the same port), worker_kill
(kill -9 of the mediasoup worker holding the room: the room is made again on
the live worker and the clients rejoin it, so the gap is from the last frame of
the old consumer to the first frame of the new one; bench/browser_faults.py
measures the same with browser pages).
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.auth import TokenService  # noqa: E402
from controlplane.clinical.field_crypto import FieldCipher  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import LocalStack, start_local_stack  # noqa: E402
from controlplane.media.room_state import room_key  # noqa: E402
from telemed_client import MediaPeer, ReceivedTrack, restrict_ice_host_addresses  # noqa: E402
from telemed_client.loadtest import percentile  # noqa: E402

FAULTS = [
    "signaling_blip",
    "control_plane_kill",
    "control_plane_sigterm",
    "rpc_blip",
    "redis_pause",
    "redis_restart",
    "worker_kill",
]


class Bench:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.port = ls.free_port()
        self.env = ls.control_plane_env(
            redis_url=stack.redis.url,
            sfu_secret=stack.sfu_secret,
            jwt_secret=stack.jwt_secret,
            database_url=stack.postgres.url,
            database_admin_url=stack.postgres.admin_url,
            data_keys=stack.data_keys,
            TELEMED_LOG_LEVEL="warning",
        )
        self.control = self.start()
        self.room = ""
        self.tokens = TokenService(stack.jwt_secret, "telemed", "telemed-room", 600)
        self.cipher = FieldCipher.from_config(stack.data_keys)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ls.ManagedProcess:
        self.control = ls.start_control_plane(self.stack.data_dir, self.env, port=self.port)
        return self.control

    # ---- faults (blocking: run in a thread, so the peers keep decoding) ----------

    def signaling_blip(self) -> None:
        _cut(self.port)

    def control_plane_kill(self) -> None:
        self.control.proc.kill()
        self.control.proc.wait(5)
        self.start()

    def control_plane_sigterm(self) -> None:
        self.control.stop()
        self.start()

    def rpc_blip(self) -> None:
        port = urlparse(self.stack.sfu.url).port
        assert port is not None
        _cut(port)

    def redis_pause(self) -> None:
        os.kill(self.stack.redis.proc.pid, signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(self.stack.redis.proc.pid, signal.SIGCONT)

    def redis_restart(self) -> None:
        """kill -9, then a new Redis on the same port: live state is lost (it is kept
        in memory only) and the control plane puts its rooms back."""
        old = self.stack.redis
        old.proc.kill()
        old.proc.wait(5)
        port = urlparse(old.url).port
        self.stack.redis = ls.start_redis(self.stack.data_dir / "redis", port)
        self.stack.processes[self.stack.processes.index(old)] = self.stack.redis

    def worker_kill(self) -> None:
        client = redis.Redis.from_url(self.stack.redis.url, decode_responses=True)
        try:
            pid = int(str(client.hget(room_key(self.room), "workerPid")))
        finally:
            client.close()
        os.kill(pid, signal.SIGKILL)

    # ---- one run ---------------------------------------------------------------

    async def run_once(self, fault: Callable[[], None]) -> tuple[float, float]:
        created = await create_demo_session(
            self.stack.postgres.url,
            self.tokens,
            self.cipher,
            session_type="consultation",
            physician_id="dr-fault",
            patient_id="pt-fault",
            room_token_ttl=600,
        )
        room = self.room = created["session"]["roomId"]
        doctor = MediaPeer(self.url, created["tokens"]["physician"])
        patient = MediaPeer(self.url, created["tokens"]["patient"])
        try:
            for peer in (doctor, patient):
                await peer.connect()
                await peer.join(room)
                await peer.start_sending()
            for peer in (doctor, patient):
                await peer.start_receiving()
            tracks = [
                await patient.wait_for_frames("dr-fault", "video", count=15),
                await doctor.wait_for_frames("pt-fault", "video", count=15),
            ]
            for track in tracks:
                track.max_gap = 0.0
            started = time.monotonic()
            injected = asyncio.create_task(asyncio.to_thread(fault))
            back = await _signaling_back(doctor, started)
            await injected
            if fault == self.worker_kill:
                gaps = [
                    await _rejoin_gap(patient, "dr-fault", tracks[0]),
                    await _rejoin_gap(doctor, "pt-fault", tracks[1]),
                ]
                return max(gaps), back
            await asyncio.sleep(1.0)
            return max(t.max_gap for t in tracks), back
        finally:
            for peer in (doctor, patient):
                await peer.close()


async def _signaling_back(peer: MediaPeer, started: float, limit: float = 60.0) -> float:
    """Seconds from ``started`` until a producer pause and resume are acknowledged."""
    await asyncio.sleep(0.05)  # let the fault land first
    while time.monotonic() - started < limit:
        try:
            # Read each time: a rejoin (worker_kill) makes new producers.
            camera = peer.producers["camera"].id
            await asyncio.wait_for(peer.request("pauseProducer", {"producerId": camera}), 2.0)
            await asyncio.wait_for(peer.request("resumeProducer", {"producerId": camera}), 2.0)
            return time.monotonic() - started
        except Exception:
            await asyncio.sleep(0.05)
    return float("inf")


async def _rejoin_gap(peer: MediaPeer, sender: str, old: ReceivedTrack) -> float:
    """From the old consumer's last frame to the first frame of its replacement."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [
            t
            for t in peer.tracks_from(sender, "video")
            if t is not old and t.first_frame_at is not None
        ]
        if new and old.last_frame_at is not None:
            return min(t.first_frame_at or 0.0 for t in new) - old.last_frame_at
        await asyncio.sleep(0.02)
    return float("inf")


def _cut(port: int) -> None:
    subprocess.run(["ss", "-K", "dport", "=", f":{port}"], check=True, capture_output=True)


def _row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"  {name:<16} median {percentile(ms, 0.5):7.0f} ms   p95 {percentile(ms, 0.95):7.0f} ms"
        f"   max {max(ms):7.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--runs", type=int, default=5, help="runs per fault type")
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")
    restrict_ice_host_addresses(["127.0.0.1"])
    stack = start_local_stack(rtc_min_port=44000, rtc_max_port=44999)
    bench = Bench(stack)
    try:
        for name in faults:
            gaps, backs = [], []
            for _ in range(args.runs):
                gap, back = await bench.run_once(getattr(bench, name))
                gaps.append(gap)
                backs.append(back)
            print(f"{name} ({args.runs} runs)")
            print(_row("media gap", gaps))
            print(_row("signaling back", backs), flush=True)
    finally:
        bench.control.stop()
        stack.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
