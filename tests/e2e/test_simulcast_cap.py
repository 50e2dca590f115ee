"""Simulcast under a bandwidth cap (issue 13): a browser on the host sends its camera
in three layers to the SFU on the host side of the veth; a browser inside the
namespace watches it in a large tile.  A tc tbf cap on what is sent into the
namespace moves that page to a smaller layer (it decodes 640x360 or 320x180
instead of 1280x720, and keeps decoding); lifted, the page climbs back up."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from controlplane.devstack.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import Stack, new_room_id
from tests.network_namespace import sh, start_host_side, veth_namespace

pytestmark = pytest.mark.e2e


@dataclass
class CappedPath:
    url: str  # the host-side control plane
    host_if: str  # the veth end whose egress goes into the namespace
    namespace: str
    stack: Stack


@pytest.fixture(scope="module")
def path(stack: Stack) -> Iterator[CappedPath]:
    with veth_namespace() as ns:
        host = start_host_side(stack, ns, sfu_ports=(49000, 49999), relay_ports=(54000, 54999))
        try:
            yield CappedPath(host.control.url, ns.host_if, ns.name, stack)
        finally:
            host.stop()


async def launch(path: CappedPath, in_namespace: bool) -> AsyncIterator[Browser]:
    """Chromium on the host or inside the namespace, treating the host-side control
    plane's plain-HTTP origin as secure (a page needs that for its camera)."""
    executable = CHROMIUM
    if in_namespace:
        wrapper = Path(tempfile.mkdtemp(prefix="telemed-sim-")) / "chromium-in-namespace"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {path.namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
    flags = [*CHROMIUM_FLAGS, f"--unsafely-treat-insecure-origin-as-secure={path.url}"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=flags, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def host_browser(path: CappedPath) -> AsyncIterator[Browser]:
    async for browser in launch(path, in_namespace=False):
        yield browser


@pytest.fixture
async def ns_browser(path: CappedPath) -> AsyncIterator[Browser]:
    async for browser in launch(path, in_namespace=True):
        yield browser


async def open_page(browser: Browser, path: CappedPath, room: str, pid: str, role: str) -> Page:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    token = path.stack.token(room, pid, role, call_type="group_therapy")
    await page.goto(f"{path.url}/consult/{room}#token={token}")
    await page.wait_for_selector('#status[data-state="connected"]', timeout=20000)
    return page


async def camera_from(page: Page, peer_id: str) -> dict:
    rows = await asyncio.wait_for(page.evaluate("window.telemed.inbound()"), 10)
    for row in rows:
        if row["peerId"] == peer_id and row["kind"] == "video" and row["source"] == "camera":
            return dict(row)
    return {"frameHeight": 0, "framesDecoded": 0}


LAYER_OF = {180: "0", 360: "1", 720: "2"}  # the spatial layer each height comes from


async def settle(
    page: Page, peer_id: str, heights: set[int], timeout: float, unreported: bool = False
) -> dict:
    """Wait until the page decodes ``peer_id``'s camera at one of ``heights``, with
    frames still arriving, and its tile shows the layer those frames come from
    (``consumerLayersChanged`` may reach the page a moment after the frames do).
    ``unreported``: a tile showing no layer passes too (on a congested link the
    SFU can report a moment with no layer forwarded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    row = {**await camera_from(page, peer_id), "layer": None}
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        latest = await camera_from(page, peer_id)
        layer = await page.get_attribute(
            f'.tile[data-peer-id="{peer_id}"][data-source="camera"]', "data-layer"
        )
        advancing = latest["framesDecoded"] > row["framesDecoded"]
        height = latest["frameHeight"]
        shown = layer == LAYER_OF.get(height) or (unreported and layer == "")
        if height in heights and advancing and shown:
            return {**latest, "layer": layer}
        row = {**latest, "layer": layer}
    raise AssertionError(f"{peer_id}'s camera not at {heights} p within {timeout} s: {row}")


async def test_a_bandwidth_cap_moves_a_page_to_a_smaller_layer_and_back(
    path: CappedPath, host_browser: Browser, ns_browser: Browser
) -> None:
    room = new_room_id("ns-sim")
    await open_page(host_browser, path, room, "dr-sim", "physician")
    patient = await open_page(ns_browser, path, room, "pt-sim", "patient")
    # Chromium's fake camera: 1280x720 at about 800 kbps, 640x360 at about 370 kbps.
    before = await settle(patient, "dr-sim", {720}, timeout=30)
    # A short queue: a round trip over 300 ms would (rightly) move the page to
    # the TURN relay, which is not what this test is about.
    sh(
        "tc", "qdisc", "add", "dev", path.host_if, "root", "tbf",
        "rate", "600kbit", "burst", "16kb", "latency", "80ms",
    )  # fmt: skip
    try:
        capped = await settle(patient, "dr-sim", {180, 360}, timeout=40)
        # It stays on a smaller layer, on the same consumer, still decoding.
        await asyncio.sleep(3)
        held = await settle(patient, "dr-sim", {180, 360}, timeout=10, unreported=True)
        assert held["consumerId"] == capped["consumerId"] == before["consumerId"]
        assert held["framesDecoded"] > capped["framesDecoded"]
    finally:
        sh("tc", "qdisc", "del", "dev", path.host_if, "root", check=False)
    await settle(patient, "dr-sim", {720}, timeout=60)
