"""Simulcast (issue 13): a browser sends its camera in three layers where the call
type asks for it (group therapy) or once a room holds a third person; the server
gives each subscriber the layer its tile needs.  Checked on what a subscriber
decodes: the frame size of the video it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page

from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer
from telemed_client.receiving import ReceivedTrack
from tests.conftest import Stack
from tests.e2e.conftest import Pages, room_id, stream_from, wait_decoding

pytestmark = pytest.mark.e2e

CAMERA_ENCODINGS = "window.telemed.call.producers.get('camera').rtpParameters.encodings.length"


@pytest.fixture
async def peers() -> AsyncIterator[list[MediaPeer]]:
    made: list[MediaPeer] = []
    yield made
    for peer in made:
        await peer.close()


async def receiver(
    stack: Stack, peers: list[MediaPeer], room: str, pid: str, role: str, call_type: str
) -> MediaPeer:
    peer = MediaPeer(stack.url, stack.token(room, pid, role, call_type=call_type))
    peers.append(peer)
    await peer.connect()
    await peer.join(room)
    await peer.start_receiving()
    return peer


async def camera_of(peer: MediaPeer, peer_id: str, frames: int = 10) -> ReceivedTrack:
    """The live camera track ``peer`` receives from ``peer_id``, once decoding."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        live = [
            t for t in peer.tracks_from(peer_id, "video") if not t.ended and t.source == "camera"
        ]
        if live and live[-1].frames >= frames:
            return live[-1]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no camera from {peer_id}: {peer.tracks_from(peer_id)}")
        await asyncio.sleep(0.1)


async def decoded_height(track: ReceivedTrack, height: int, timeout: float = 15.0) -> None:
    """Wait until ``track`` decodes frames ``height`` pixels tall (still arriving)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        frames = track.frames
        await asyncio.sleep(0.3)
        if track.height == height and track.frames > frames:
            return
    raise AssertionError(f"decoding {track.width}x{track.height}, not {height} p high")


async def tile_layer(page: Page, peer_id: str, height: int, timeout: float = 20.0) -> dict:
    """Wait until the page's camera tile of ``peer_id`` shows the layer ``height``
    pixels tall (decoded and still decoding); its tile and inbound stream."""
    selector = f'.tile[data-peer-id="{peer_id}"][data-source="camera"]'
    deadline = asyncio.get_running_loop().time() + timeout
    row: dict = {}
    while asyncio.get_running_loop().time() < deadline:
        first = await stream_from(page, peer_id, "video")
        await asyncio.sleep(0.4)
        row = await stream_from(page, peer_id, "video")
        if row["frameHeight"] == height and row["framesDecoded"] > first["framesDecoded"]:
            tile = await page.eval_on_selector(
                selector,
                "(t) => ({layer: t.dataset.layer, height: t.querySelector('video').clientHeight})",
            )
            return {**row, **tile}
    raise AssertionError(f"{peer_id}'s camera not at {height} p: {row}")


async def test_the_page_gets_the_layer_its_tile_needs(stack: Stack, pages: Pages) -> None:
    room = room_id()
    await pages.open(room, "dr-tile", "physician", "Dra. Ana", call_type="group_therapy")
    patient = await pages.open(
        room,
        "pt-tile",
        "patient",
        "Paciente",
        call_type="group_therapy",
        viewport={"width": 1600, "height": 1000},
    )
    await wait_decoding(patient, "dr-tile")
    big = await tile_layer(patient, "dr-tile", 720)  # Chromium's fake camera: 1280x720
    assert big["layer"] == "2" and big["height"] > 360
    # A smaller window: the tile shrinks, the page says so, the server picks the
    # smallest layer that fills it (360 p for a 257 px tile, 180 p for 166 px).
    await patient.set_viewport_size({"width": 480, "height": 600})
    middle = await tile_layer(patient, "dr-tile", 360)
    assert middle["layer"] == "1" and 200 < middle["height"] <= 400
    await patient.set_viewport_size({"width": 320, "height": 600})
    small = await tile_layer(patient, "dr-tile", 180)
    assert small["layer"] == "0" and small["height"] <= 200
    await patient.set_viewport_size({"width": 1600, "height": 1000})
    assert (await tile_layer(patient, "dr-tile", 720))["layer"] == "2"


async def test_tile_reports_count_only_the_subscribers_own_consumers(
    stack: Stack, pages: Pages, peers: list[MediaPeer]
) -> None:
    room = room_id()
    await pages.open(room, "dr-rep", "physician", "Dra. Ana", call_type="group_therapy")
    patient = await receiver(stack, peers, room, "pt-rep", "patient", "group_therapy")
    camera = await camera_of(patient, "dr-rep")
    assert camera.type == "simulcast"
    ack = await patient.request(
        "reportTileSizes",
        {"tiles": [{"consumerId": camera.consumer_id, "width": 213, "height": 120}]},
    )
    assert ack == {
        "tiles": 1,
        "preferredLayers": {camera.consumer_id: {"spatialLayer": 0, "priority": 1}},
    }
    await patient.wait_for_event(
        "consumerLayersChanged",
        lambda d: d["consumerId"] == camera.consumer_id and d["spatialLayer"] == 0,
    )
    await decoded_height(camera, 180)
    # Someone else's consumer, or one that is gone, is not counted (and not touched).
    ack = await patient.request(
        "reportTileSizes",
        {
            "tiles": [
                {"consumerId": "7f0c6a5e-0d5a-4f7e-9a43-1c3f2b8e9d10", "width": 1, "height": 1}
            ]
        },
    )
    assert ack["tiles"] == 0
    refused = await patient.sio.call("reportTileSizes", {"tiles": [{"consumerId": "x"}]})
    assert refused["error"]["code"] == "VALIDATION_ERROR"
    await decoded_height(camera, 180)  # nothing changed


async def test_a_third_person_makes_the_cameras_simulcast(
    stack: Stack, pages: Pages, peers: list[MediaPeer]
) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-grow", "physician", "Dra. Ana")
    patient = await receiver(stack, peers, room, "pt-grow", "patient", "consultation")
    before = await camera_of(patient, "dr-grow")
    assert before.type == "simple"  # two people: one layer is enough
    assert await doctor.evaluate(CAMERA_ENCODINGS) == 1

    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=10)
    try:
        producers = (await client.request("getInfo", {}))["producers"]
        nurse = await receiver(stack, peers, room, "rn-grow", "nurse", "consultation")
        assert nurse.join_info["mediaProfile"]["simulcast"] is True
        # The page sends its camera again, with three layers, in place of the first.
        after = await camera_of(patient, "dr-grow", frames=20)
        assert after.consumer_id != before.consumer_id and after.type == "simulcast"
        assert before.ended
        assert await doctor.evaluate(CAMERA_ENCODINGS) == 3
        assert (await camera_of(nurse, "dr-grow")).type == "simulcast"
        assert await doctor.get_attribute("#status", "data-state") == "connected"
        # The first camera is gone from the SFU: as many producers as before.
        assert (await client.request("getInfo", {}))["producers"] == producers
    finally:
        await client.close()
