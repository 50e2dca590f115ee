"""Cost of call-quality sampling at N live consultations.

Starts Redis, PostgreSQL, an SFU node and three control planes on loopback: one
never samples (baseline), one samples every participant every 2 s
(TELEMED_STATS_STABLE_EVERY=1), one with the default (a consultation going well
every third pass).  N consultations (2 participants each, audio + video producers
and consumers) are opened on each in turn, measured, closed.  By default the
tracks are "silent" (no frames, so the measurement is not drowned in encoder CPU;
such calls never count as going well); with --media they carry a tone and a
160x128 pattern.  Prints, per run: CPU used by the control plane and the SFU node
(share of one core), and the sampling passes (the control plane's own
telemed_stats_sampling_seconds histogram).

    .venv/bin/python bench/sampling_cost.py -n 50
    .venv/bin/python bench/sampling_cost.py -n 10 --media
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.auth import TokenService  # noqa: E402
from controlplane.clinical.field_crypto import FieldCipher  # noqa: E402
from controlplane.devstack import services as ls  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import start_local_stack  # noqa: E402
from telemed_client import MediaPeer, restrict_ice_host_addresses  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS


def tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = Path(f"/proc/{pid}/task/{child.name}/children")
        if children.exists():
            for cpid in children.read_text().split():
                try:
                    total += tree_cpu(int(cpid))
                except (FileNotFoundError, ProcessLookupError):
                    pass
    return total


async def sampling_stats(url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "telemed_stats_sampling_seconds_sum":
                total = sample.value
            elif sample.name == "telemed_stats_sampling_seconds_count":
                count = sample.value
    return total, count


async def run(
    label: str,
    control: ls.ManagedProcess,
    sfu: ls.ManagedProcess,
    database_url: str,
    tokens: TokenService,
    cipher: FieldCipher,
    n: int,
    window: float,
    media: str,
) -> dict:
    peers: list[MediaPeer] = []
    try:
        for i in range(n):
            created = await create_demo_session(
                database_url,
                tokens,
                cipher,
                session_type="consultation",
                physician_id=f"dr-load-{i}",
                patient_id=f"pt-load-{i}",
                room_token_ttl=600,
            )
            pair = [
                MediaPeer(
                    control.url,
                    created["tokens"][role],
                    media=media,
                    video_size=(160, 128),
                    auto_consume=True,
                )
                for role in ("physician", "patient")
            ]
            for peer in pair:
                await peer.connect()
                await peer.join(created["session"]["roomId"])
                await peer.start_sending()
            for peer in pair:
                await peer.start_receiving()
            peers.extend(pair)
        await asyncio.sleep(3)  # settle
        before = (
            tree_cpu(control.proc.pid),
            tree_cpu(sfu.proc.pid),
            *await sampling_stats(control.url),
        )
        await asyncio.sleep(window)
        after = (
            tree_cpu(control.proc.pid),
            tree_cpu(sfu.proc.pid),
            *await sampling_stats(control.url),
        )
        passes = after[3] - before[3]
        return {
            "label": label,
            "control_cpu": (after[0] - before[0]) / window,
            "sfu_cpu": (after[1] - before[1]) / window,
            "passes": passes,
            "pass_mean": (after[2] - before[2]) / passes if passes else 0.0,
        }
    finally:
        for peer in peers:
            await peer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--consultations", type=int, default=50)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per run")
    parser.add_argument("--media", action="store_true", help="a tone and a pattern, not silence")
    args = parser.parse_args()
    restrict_ice_host_addresses(["127.0.0.1"])
    stack = start_local_stack(rtc_min_port=47000, rtc_max_port=47999)
    try:
        settings = {"TELEMED_LOG_LEVEL": "warning", "TELEMED_MAX_PEERS_PER_ROOM": "4"}
        every = stack.start_control_plane(
            **settings, TELEMED_STATS_INTERVAL="2", TELEMED_STATS_STABLE_EVERY="1"
        )
        adaptive = stack.start_control_plane(**settings, TELEMED_STATS_INTERVAL="2")
        baseline = stack.start_control_plane(**settings, TELEMED_STATS_INTERVAL="3600")
        tokens = TokenService(stack.jwt_secret, "telemed", "telemed-room", 600)
        cipher = FieldCipher.from_config(stack.data_keys)
        results = []
        for label, control in (
            ("baseline (no sampling)", baseline),
            ("everyone every 2 s", every),
            ("calm calls every 6 s", adaptive),
        ):
            results.append(
                await run(
                    label,
                    control,
                    stack.sfu,
                    stack.postgres.url,
                    tokens,
                    cipher,
                    args.consultations,
                    args.window,
                    "synthetic" if args.media else "silent",
                )
            )
        print(
            f"{args.consultations} live consultations ({args.consultations * 2} participants, "
            f"{args.consultations * 4} producers, {args.consultations * 4} consumers), "
            f"{args.window:.0f} s window"
        )
        header = f"{'run':<26}{'control plane CPU':>19}{'SFU node CPU':>14}"
        print(f"{header}{'passes':>8}{'mean pass':>11}")
        for r in results:
            print(
                f"{r['label']:<26}{r['control_cpu']:>18.1%}{r['sfu_cpu']:>14.1%}{r['passes']:>8.0f}"
                f"{r['pass_mean'] * 1000:>9.1f}ms"
            )
        for r in results[1:]:
            extra_cp = r["control_cpu"] - results[0]["control_cpu"]
            extra_sfu = r["sfu_cpu"] - results[0]["sfu_cpu"]
            print(
                f"sampling cost, {r['label']}: control plane {extra_cp:+.1%} of a core, "
                f"SFU node {extra_sfu:+.1%} ({extra_sfu / max(1e-9, results[0]['sfu_cpu']):+.0%} "
                "of its baseline)"
            )
    finally:
        stack.stop()


if __name__ == "__main__":
    import logging

    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    start = time.monotonic()
    asyncio.run(main())
    print(f"(bench wall time {time.monotonic() - start:.0f} s)")
