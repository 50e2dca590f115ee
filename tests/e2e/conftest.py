"""Headless Chromium (Debian's /usr/bin/chromium driven by playwright) with fake
camera, microphone and screen, against the real stack of tests/conftest.py."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from controlplane.devstack.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import ARTIFACTS, Stack

SCREENSHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        yield chromium
        await chromium.close()


class Pages:
    """Opens consultation pages (one browser context each) and closes them after a test."""

    def __init__(self, browser: Browser, stack: Stack) -> None:
        self.browser = browser
        self.stack = stack
        self.opened: list[Any] = []
        self.console: dict[str, list[str]] = {}

    async def open(
        self,
        room: str,
        participant: str,
        role: str,
        name: str,
        *,
        call_type: str = "consultation",
        viewport: dict[str, int] | None = None,
        wait_connected: bool = True,
        base_url: str | None = None,
    ) -> Page:
        context = await self.browser.new_context(
            viewport=viewport or {"width": 1280, "height": 800}
        )
        self.opened.append(context)
        page = await context.new_page()
        log = self.console.setdefault(participant, [])
        page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        token = self.stack.token(room, participant, role, display_name=name, call_type=call_type)
        await page.goto(f"{base_url or self.stack.url}/consult/{room}#token={token}")
        if wait_connected:
            await page.wait_for_selector('#status[data-state="connected"]', timeout=15000)
        return page

    async def close(self) -> None:
        for context in self.opened:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, stack: Stack) -> AsyncIterator[Pages]:
    opened = Pages(browser, stack)
    yield opened
    await opened.close()
    # Shown by pytest only when the test failed: what each page said.
    for participant, lines in opened.console.items():
        print(f"--- console of {participant} (last 40 of {len(lines)})")
        print("\n".join(lines[-40:]))


def room_id() -> str:
    return f"web-{secrets.token_hex(5)}"


async def inbound(page: Page) -> list[dict[str, Any]]:
    # page.evaluate has no timeout of its own: bound it so a stuck page fails the test.
    rows: list[dict[str, Any]] = await asyncio.wait_for(
        page.evaluate("window.telemed.inbound()"), timeout=10
    )
    return rows


async def stream_from(
    page: Page, peer_id: str, kind: str, source: str | None = None
) -> dict[str, Any]:
    for row in await inbound(page):
        if (
            row["peerId"] == peer_id
            and row["kind"] == kind
            and (source is None or row["source"] == source)
        ):
            return row
    raise AssertionError(f"no inbound {kind} from {peer_id}: {json.dumps(await inbound(page))}")


async def decoding(
    page: Page, peer_id: str, source: str = "camera", seconds: float = 1.0
) -> tuple[int, int]:
    """framesDecoded of a remote video at two moments `seconds` apart."""
    first = (await stream_from(page, peer_id, "video", source))["framesDecoded"]
    await asyncio.sleep(seconds)
    second = (await stream_from(page, peer_id, "video", source))["framesDecoded"]
    return first, second


async def wait_decoding(
    page: Page, peer_id: str, source: str = "camera", timeout: float = 10.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            first, second = await decoding(page, peer_id, source, 0.5)
            if second > first > 0:
                return
        except AssertionError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{peer_id}'s {source} video is not decoding: {json.dumps(await inbound(page))}"
            )


SELECTED_PAIRS = """async () => {
  const call = window.telemed.call;
  const types = [];
  for (const transport of [call.sendTransport, call.recvTransport]) {
    if (!transport) {
      types.push(null);
      continue;
    }
    const stats = await transport.getStats();
    const byId = new Map();
    let pairId = null;
    stats.forEach((report) => {
      byId.set(report.id, report);
      if (report.type === 'transport' && report.selectedCandidatePairId) {
        pairId = report.selectedCandidatePairId;
      }
    });
    const pair = byId.get(pairId);
    types.push(pair ? byId.get(pair.localCandidateId).candidateType : null);
  }
  return types;
}"""


async def selected_local_types(page: Page) -> list[str | None]:
    """Local candidate type (host, srflx, relay) of the ICE pair each of the page's
    two transports uses."""
    types: list[str | None] = await asyncio.wait_for(page.evaluate(SELECTED_PAIRS), 10)
    return types


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
