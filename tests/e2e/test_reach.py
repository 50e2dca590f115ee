"""Reach: Chromium in a network namespace (198.51.100.2) opens the consultation
page over HTTPS on the host's namespace-side address, trusting the test CA the
way a user would (in its certificate store), while nftables in the namespace
drops every packet to the SFU's media ports: only the TURN server (coturn) on
the host can carry the media.  Frames must be decoded both ways over a relay
candidate pair; and with credentials coturn refuses, the page must say so
instead of trying forever."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Error, async_playwright

from controlplane.devstack import services as ls
from controlplane.devstack.chromium import CHROMIUM, CHROMIUM_FLAGS
from controlplane.devstack.local_ca import server_certificate
from tests.conftest import Stack
from tests.e2e.conftest import (
    Pages,
    decoding,
    room_id,
    selected_local_types,
    stream_from,
    wait_decoding,
)
from tests.network_namespace import (
    HOST_IP,
    Namespace,
    start_host_side,
    veth_namespace,
)

pytestmark = pytest.mark.e2e

SFU_PORTS = (47000, 47999)
RELAY_PORTS = (53000, 53999)


@dataclass
class Reach:
    ns: Namespace
    stack: Stack
    control: ls.ManagedProcess
    env: dict[str, str]
    ca_cert: Path
    chromium: Path  # a wrapper that runs Chromium inside the namespace
    home: Path  # HOME whose NSS store trusts the test CA


@pytest.fixture(scope="module")
def reach(stack: Stack) -> Iterator[Reach]:
    started: list[ls.ManagedProcess] = []
    folder = Path(tempfile.mkdtemp(prefix="telemed-reach-"))
    with veth_namespace() as ns:
        try:
            # Direct media from the namespace to the SFU is dropped; TURN and HTTPS pass.
            ns.nft(
                "table inet reach {\n"
                "  chain out {\n"
                "    type filter hook output priority 0;\n"
                f"    ip daddr {HOST_IP} udp dport {SFU_PORTS[0]}-{SFU_PORTS[1]} drop\n"
                f"    ip daddr {HOST_IP} tcp dport {SFU_PORTS[0]}-{SFU_PORTS[1]} drop\n"
                "  }\n"
                "}\n"
            )
            tls = server_certificate(folder / "tls", [HOST_IP])
            host = start_host_side(
                stack,
                ns,
                sfu_ports=SFU_PORTS,
                relay_ports=RELAY_PORTS,
                TELEMED_TLS_CERT=str(tls.cert),
                TELEMED_TLS_KEY=str(tls.key),
            )
            started.extend(host.processes)
            control, env = host.control, host.env
            home = folder / "home"
            nssdb = home / ".pki" / "nssdb"
            nssdb.mkdir(parents=True)
            certutil = ["certutil", "-d", f"sql:{nssdb}"]
            subprocess.run([*certutil, "-N", "--empty-password"], check=True, capture_output=True)
            subprocess.run(
                [*certutil, "-A", "-t", "C,,", "-n", "telemed test CA", "-i", str(tls.ca_cert)],
                check=True,
                capture_output=True,
            )
            wrapper = folder / "chromium-in-namespace"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
            wrapper.chmod(0o755)
            yield Reach(ns, stack, control, env, tls.ca_cert, wrapper, home)
        finally:
            for process in reversed(started):
                process.stop()


async def _browser(reach: Reach, home: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(reach.chromium),
            args=CHROMIUM_FLAGS,
            headless=True,
            env={"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        yield browser
        await browser.close()


@pytest.fixture
async def ns_browser(reach: Reach) -> AsyncIterator[Browser]:
    async for browser in _browser(reach, reach.home):
        yield browser


async def test_a_page_behind_a_firewall_calls_over_https_through_the_turn_relay(
    reach: Reach, ns_browser: Browser
) -> None:
    pages = Pages(ns_browser, reach.stack)
    room = room_id()
    try:
        doctor = await pages.open(
            room, "dr-reach", "physician", "Dr. Reach", base_url=reach.control.url
        )
        patient = await pages.open(
            room, "pt-reach", "patient", "Pat Reach", base_url=reach.control.url
        )
        assert reach.control.url.startswith(f"https://{HOST_IP}:")
        assert await patient.evaluate("window.isSecureContext && location.protocol") == "https:"
        for page, other in ((doctor, "pt-reach"), (patient, "dr-reach")):
            await wait_decoding(page, other, timeout=15)
            # At least 5 frames a second through the relay (a loaded 2-core machine
            # decodes fewer than the camera's 30).
            before, after = await decoding(page, other, seconds=2.0)
            assert after >= before + 10, (before, after)
            assert (await stream_from(page, other, "video"))["frameWidth"] > 0
            assert await selected_local_types(page) == ["relay", "relay"]
    finally:
        await pages.close()


async def test_without_the_ca_trusted_the_page_does_not_load(reach: Reach, tmp_path: Path) -> None:
    """The HTTPS above works because the CA is trusted, not by accident."""
    async for browser in _browser(reach, tmp_path):
        page = await (await browser.new_context()).new_page()
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            await page.goto(f"{reach.control.url}/health/live")


async def test_refused_turn_credentials_end_with_a_clear_page_state(
    reach: Reach, ns_browser: Browser
) -> None:
    """A control plane whose TURN secret coturn does not share: the relay answers
    401, direct media is dropped, and the page says so (no endless 'connecting')."""
    env = {**reach.env, "TELEMED_TURN_SECRET": secrets.token_urlsafe(24)}
    # Not in the SFU range the namespace drops: a port there would let the host's
    # readiness check through while the page's navigation never got an answer.
    port = ls.free_port(HOST_IP, (SFU_PORTS, RELAY_PORTS))
    wrong = await asyncio.to_thread(
        ls.start_control_plane, reach.stack.data_dir, env, port, HOST_IP
    )
    pages = Pages(ns_browser, reach.stack)
    try:
        page = await pages.open(
            room_id(), "pt-refused", "patient", "Pat", base_url=wrong.url, wait_connected=False
        )
        await page.wait_for_selector('#status[data-state="failed"]', timeout=30000)
        message = await page.inner_text("body")
        assert "relay server refused" in message and "TURN error 401" in message, message
    finally:
        await pages.close()
        await asyncio.to_thread(wrong.stop)
