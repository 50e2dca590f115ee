"""The page shows 'reconnecting' when its media (ICE) connection drops, and
recovers by ICE restart or rejoin, without a reload, once the network is back.

The fault: an nftables table of the test's own drops loopback packets to and
from the test SFU node's media ports (45000-45999, UDP and TCP), then is removed.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest
from playwright.async_api import expect

from controlplane.media.room_state import RoomState
from tests.e2e.conftest import Pages, room_id, selected_local_types, wait_decoding

pytestmark = pytest.mark.e2e

TABLE = "telemed_test_ice"
MEDIA_PORTS = "45000-45999"  # the rtc port range of the test SFU node (tests/conftest.py)


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True)


@pytest.fixture
def media_blackhole() -> Iterator[dict[str, object]]:
    controls: dict[str, object] = {}

    def block() -> None:
        _nft("add", "table", "inet", TABLE)
        _nft("add", "chain", "inet", TABLE, "input", "{ type filter hook input priority 0; }")
        for proto in ("udp", "tcp"):
            for direction in ("dport", "sport"):
                _nft(
                    "add",
                    "rule",
                    "inet",
                    TABLE,
                    "input",
                    "iif",
                    "lo",
                    proto,
                    direction,
                    MEDIA_PORTS,
                    "drop",
                )

    def unblock() -> None:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)

    controls["block"] = block
    controls["unblock"] = unblock
    try:
        yield controls
    finally:
        unblock()


async def test_page_recovers_after_the_media_path_drops(pages: Pages, media_blackhole) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-ice", "physician", "Dr. Ice")
    patient = await pages.open(room, "pt-ice", "patient", "Iara")
    await wait_decoding(patient, "dr-ice")
    await wait_decoding(doctor, "pt-ice")

    media_blackhole["block"]()
    for page in (doctor, patient):
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "reconnecting", timeout=20000
        )
        await expect(page.locator("#status")).to_have_text("Reconnecting…")

    media_blackhole["unblock"]()
    for page in (doctor, patient):
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "connected", timeout=30000
        )
    await wait_decoding(patient, "dr-ice", timeout=20)
    await wait_decoding(doctor, "pt-ice", timeout=20)


ADVISE_RELAY = """async () => {
  // The server's advice as it arrives on the socket, with credentials the server
  // issued just now (a restartIce ack carries them).
  const call = window.telemed.call;
  const { iceServers } = await call.request('restartIce', { transportId: call.recvTransport.id });
  for (const handler of call.socket.listeners('iceRelayAdvised')) {
    handler({ reason: 'round-trip time above 300 ms', iceServers });
  }
  return iceServers.length;
}"""


async def test_relay_advice_moves_the_media_onto_the_turn_relay(pages: Pages, redis) -> None:
    """On iceRelayAdvised the page moves its media to new relay-only transports
    without leaving the call: its pairs become relay candidates (coturn on
    loopback), video goes on both ways, and the other side never sees it leave."""
    room = patient_room = room_id()
    doctor = await pages.open(room, "dr-adv", "physician", "Dr. Advice")
    patient = await pages.open(room, "pt-adv", "patient", "Ana")
    await wait_decoding(patient, "dr-adv")
    await wait_decoding(doctor, "pt-adv")
    assert "relay" not in await selected_local_types(patient)
    await doctor.evaluate(
        "window.left = []; window.telemed.call.on('peerleft', (e) => window.left.push(e.peerId))"
    )

    assert await patient.evaluate(ADVISE_RELAY) == 1
    for _ in range(50):
        if await selected_local_types(patient) == ["relay", "relay"]:
            break
        await asyncio.sleep(0.2)
    assert await selected_local_types(patient) == ["relay", "relay"]
    await expect(patient.locator("body")).to_contain_text("relay server")
    await wait_decoding(patient, "dr-adv")
    await wait_decoding(doctor, "pt-adv")
    await expect(patient.locator("#status")).to_have_attribute("data-state", "connected")
    assert await doctor.evaluate("window.left") == []
    # The old transports are closed on the server: two remain.
    ids = await patient.evaluate(
        "[window.telemed.call.sendTransport.id, window.telemed.call.recvTransport.id]"
    )
    transports = await RoomState(redis).transports(patient_room, "pt-adv")
    assert set(transports) == set(ids)
