"""What a killed mediasoup worker costs two browser pages in a call.

R times: a real 1:1 session; a physician page and a patient page (headless
Chromium, fake camera) in the call, both decoding each other's video; then
`kill -9` of the mediasoup worker that holds the room.  Per page the benchmark
records, on the page's own clock, every rendered frame of the remote camera
(requestVideoFrameCallback) with the id of the track it came from, and reports
  - video back: from the kill to the first rendered frame of a new track
    (the room is made again on a live worker and the page joins it);
  - status back: from the kill until the page's status reads "connected" again.
Prints median / p95 / max over both pages of every run.  A stack of its own
(Redis, PostgreSQL, one SFU node with two workers, one control plane), never
`make run`'s.

    .venv/bin/python bench/browser_faults.py -r 10

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faults import Bench, _row  # noqa: E402
from controlplane.devstack.chromium import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from controlplane.devstack.demo import create_demo_session  # noqa: E402
from controlplane.devstack.stack import start_local_stack  # noqa: E402

# Runs in every page before its scripts: remember each rendered frame of every
# remote video element, with its track id and the wall clock (ms).
FRAME_RECORDER = """
window.__frames = [];
const watched = new WeakSet();
function watch(video) {
  if (watched.has(video)) return;
  watched.add(video);
  const tile = video.closest('.tile');
  const onFrame = () => {
    const track = video.srcObject && video.srcObject.getVideoTracks()[0];
    if (track && tile) {
      window.__frames.push({ peer: tile.dataset.peerId, track: track.id, at: Date.now() });
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
setInterval(() => document.querySelectorAll('.tile video').forEach(watch), 20);
window.__status = [];
document.addEventListener('DOMContentLoaded', () => {
  const status = document.getElementById('status');
  new MutationObserver(() => {
    window.__status.push({ state: status.dataset.state, at: Date.now() });
  }).observe(status, { attributes: true, attributeFilter: ['data-state'] });
});
"""


async def _open(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 960, "height": 600})
    await context.add_init_script(FRAME_RECORDER)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector('#status[data-state="connected"]', timeout=15000)
    return page


async def _frames(page: Page, peer: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await page.evaluate(
        f"window.__frames.filter((f) => f.peer === {peer!r})"
    )
    return rows


async def _wait_frames(page: Page, peer: str, count: int, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while len(await _frames(page, peer)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no video from {peer}")
        await asyncio.sleep(0.1)


async def _video_back(page: Page, peer: str, killed_at: float, limit: float = 20.0) -> float:
    """Seconds from the kill to the first frame of a track not seen before it."""
    before = {f["track"] for f in await _frames(page, peer) if f["at"] <= killed_at * 1000}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        new = [f["at"] for f in await _frames(page, peer) if f["track"] not in before]
        if new:
            return min(new) / 1000 - killed_at
        await asyncio.sleep(0.05)
    return float("inf")


async def _status_back(page: Page, killed_at: float, limit: float = 20.0) -> float:
    """Seconds from the kill until the page's status is "connected" again, after
    it has left that state."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        changes = await page.evaluate(f"window.__status.filter((c) => c.at > {killed_at * 1000})")
        left = next((i for i, c in enumerate(changes) if c["state"] != "connected"), None)
        if left is not None:
            back = [c["at"] for c in changes[left:] if c["state"] == "connected"]
            if back:
                return back[0] / 1000 - killed_at
        await asyncio.sleep(0.05)
    return float("inf")


async def run_once(bench: Bench, browser: Browser) -> list[tuple[float, float]]:
    created = await create_demo_session(
        bench.stack.postgres.url,
        bench.tokens,
        bench.cipher,
        session_type="consultation",
        physician_id="dr-wk",
        patient_id="pt-wk",
        room_token_ttl=600,
    )
    bench.room = room = created["session"]["roomId"]
    doctor = await _open(
        browser, f"{bench.url}/consult/{room}#token={created['tokens']['physician']}"
    )
    patient = await _open(
        browser, f"{bench.url}/consult/{room}#token={created['tokens']['patient']}"
    )
    try:
        watched = [(patient, "dr-wk"), (doctor, "pt-wk")]
        for page, peer in watched:
            await _wait_frames(page, peer, 15)
        killed_at = time.time()
        await asyncio.to_thread(bench.worker_kill)
        return [
            (await _video_back(page, peer, killed_at), await _status_back(page, killed_at))
            for page, peer in watched
        ]
    finally:
        for page in (doctor, patient):
            await page.context.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--runs", type=int, default=10, help="worker kills")
    args = parser.parse_args()
    stack = start_local_stack(rtc_min_port=45000, rtc_max_port=45999)
    bench = Bench(stack)
    video: list[float] = []
    status: list[float] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
            )
            for _ in range(args.runs):
                for v, s in await run_once(bench, browser):
                    video.append(v)
                    status.append(s)
                await asyncio.sleep(1.0)  # the node replaces the dead worker
            await browser.close()
        print(f"worker_kill, browser pages ({args.runs} kills, {len(video)} page samples)")
        print(_row("video back", video))
        print(_row("status back", status), flush=True)
    finally:
        bench.control.stop()
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
