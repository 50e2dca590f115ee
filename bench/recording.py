"""CPU per concurrent recording, and how many one core sustains without losing
frames in the files.

Starts Redis, PostgreSQL, an SFU node and a control plane on loopback, and one
real consultation (two Python peers: 320x240 30 fps video and an Opus tone each
way, encoded live by aiortc).  The same four producers are then recorded K times
at once through the SFU node's RPC (startRecording), for growing K: each recording
is its own PlainTransports, ffmpeg (stream copy) and age (encryption), exactly as a
consultation's recording, so the generator's cost stays the same while the
recorders multiply.  Per K it prints the CPU of the ffmpeg and age processes (share
of one core, per recording and in total) over the window, and the lowest share of
the expected video frames found in any file (decrypted and counted).

    .venv/bin/python bench/recording.py --counts 1,2,4,8,16 --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyrage  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from pyrage import x25519  # noqa: E402

from controlplane.auth import TokenService  # noqa: E402
from controlplane.clinical.field_crypto import FieldCipher  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import start_local_stack  # noqa: E402
from controlplane.media.room_state import RoomState  # noqa: E402
from controlplane.placement.sfu_client import SfuClient  # noqa: E402
from telemed_client import MediaPeer, restrict_ice_host_addresses  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
FPS = 30


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / TICKS  # utime + stime


def recorder_pids(sfu_pid: int) -> list[int]:
    pids = []
    for task in Path(f"/proc/{sfu_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() in ("ffmpeg", "age"):
                pids.append(int(child))
    return pids


def video_frame_share(ciphertext: Path, identity: x25519.Identity, seconds: float) -> float:
    """Lowest share of the expected video frames over the file's video streams."""
    with tempfile.NamedTemporaryFile(suffix=".mkv") as plain:
        plain.write(pyrage.decrypt(ciphertext.read_bytes(), [identity]))
        plain.flush()
        entries = "packet=stream_index:stream=index,codec_type"
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "json", plain.name],
            capture_output=True,
            text=True,
            check=True,
        )
    info = json.loads(probe.stdout)
    video = {s["index"] for s in info["streams"] if s["codec_type"] == "video"}
    counts = {index: 0 for index in video}
    for packet in info["packets"]:
        if packet["stream_index"] in counts:
            counts[packet["stream_index"]] += 1
    return min(counts.values()) / (FPS * seconds) if counts else 0.0


async def measure(
    rpc: SfuClient, sfu_pid: int, router_id: str, producers: list[str], k: int, window: float
) -> dict[str, float]:
    identity = x25519.Identity.generate()
    ids = [f"bench-{k}-{i}" for i in range(k)]
    for recording_id in ids:
        await rpc.request(
            "startRecording",
            {
                "routerId": router_id,
                "recordingId": recording_id,
                "producerIds": producers,
                "recipient": str(identity.to_public()),
            },
        )
    started = time.monotonic()
    await asyncio.sleep(2)  # past ffmpeg's stream probing
    pids = recorder_pids(sfu_pid)
    before = sum(cpu_seconds(pid) for pid in pids)
    await asyncio.sleep(window)
    cpu = (sum(cpu_seconds(pid) for pid in pids) - before) / window
    results = [await rpc.request("stopRecording", {"recordingId": i}) for i in ids]
    seconds = time.monotonic() - started
    files = [Path(r["segments"][0]["file"]) for r in results]  # no producer joins: one each
    shares = await asyncio.gather(
        *(asyncio.to_thread(video_frame_share, file, identity, seconds) for file in files)
    )
    for file in files:
        file.unlink(missing_ok=True)
    return {"k": k, "cpu": cpu, "per_recording": cpu / k, "frames": min(shares)}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,2,4,8,16", help="concurrent recordings per run")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per run")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    restrict_ice_host_addresses(["127.0.0.1"])
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999)
    peers: list[MediaPeer] = []
    try:
        control = stack.start_control_plane(TELEMED_LOG_LEVEL="warning")
        tokens = TokenService(stack.jwt_secret, "telemed", "telemed-room", 600)
        created = await create_demo_session(
            stack.postgres.url,
            tokens,
            FieldCipher.from_config(stack.data_keys),
            session_type="consultation",
            physician_id="dr-bench",
            patient_id="pt-bench",
            room_token_ttl=600,
        )
        room = created["session"]["roomId"]
        peers = [MediaPeer(control.url, created["tokens"][r]) for r in ("physician", "patient")]
        for peer in peers:
            await peer.connect()
            await peer.join(room)
            await peer.start_sending()
        await asyncio.sleep(2)
        redis = aioredis.from_url(stack.redis.url)
        snapshot = await RoomState(redis).snapshot(room)
        await redis.aclose()
        assert snapshot is not None
        producers = [p["producerId"] for peer in snapshot["peers"] for p in peer["producers"]]
        rpc = SfuClient(snapshot["nodeId"], stack.sfu.url, stack.sfu_secret, timeout=30)
        rows = []
        try:
            for k in counts:
                rows.append(
                    await measure(
                        rpc, stack.sfu.proc.pid, snapshot["routerId"], producers, k, args.window
                    )
                )
        finally:
            await rpc.close()
        print(
            f"one consultation (4 producers: 2 x 320x240 {FPS} fps VP8 + 2 x Opus), recorded K "
            f"times at once; {args.window:.0f} s window; CPU = ffmpeg + age, share of one core"
        )
        print(f"{'K':>4}{'recorder CPU':>14}{'per recording':>15}{'video frames (min)':>20}")
        for row in rows:
            print(
                f"{row['k']:>4.0f}{row['cpu']:>14.1%}{row['per_recording']:>15.2%}"
                f"{row['frames']:>20.1%}"
            )
        held = [r for r in rows if r["frames"] >= 0.99]
        per = sorted(r["per_recording"] for r in rows)[len(rows) // 2]
        print(
            f"median CPU per recording {per:.2%} of a core -> about {int(1 / per) if per else 0} "
            "recordings per core; largest K measured with >= 99% of the frames: "
            f"{max((r['k'] for r in held), default=0):.0f}"
        )
    finally:
        for peer in peers:
            await peer.close()
        stack.stop()


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(main())
    print(f"(bench wall time {time.monotonic() - started:.0f} s)")
