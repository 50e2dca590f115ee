"""The page through faults: a dropped signaling connection or a killed and
restarted control plane is resumed (same consumers, video never stops); a cut
control-plane <-> SFU link goes unnoticed; a killed media worker moves the call
to a new room that the page rejoins; the other side's tile says "Reconnecting…"
while it is away; and an ended session says so instead of reconnecting."""

from __future__ import annotations

import asyncio
import os
import signal
from urllib.parse import urlparse

import aiohttp
import pytest
from playwright.async_api import Page, expect

from controlplane.media.room_state import RoomState
from tests.conftest import Stack
from tests.e2e.conftest import Pages, room_id, stream_from
from tests.fault_injection import cut_connections_to

pytestmark = pytest.mark.e2e


async def _consumer_ids(page: Page) -> list[str]:
    ids: list[str] = await page.evaluate("[...window.telemed.call.consumers.keys()].sort()")
    return ids


class VideoWatch:
    """Samples a remote video's framesDecoded every 100 ms and keeps the longest
    stretch without a new frame."""

    def __init__(self, page: Page, peer_id: str) -> None:
        self.page, self.peer_id = page, peer_id
        self.longest_stall = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_frames, last_change = -1, loop.time()
        while True:
            try:
                frames = (await stream_from(self.page, self.peer_id, "video"))["framesDecoded"]
            except AssertionError:
                frames = last_frames
            now = loop.time()
            if frames != last_frames:
                last_frames, last_change = frames, now
            self.longest_stall = max(self.longest_stall, now - last_change)
            await asyncio.sleep(0.1)

    def __enter__(self) -> VideoWatch:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _assert_no_stall(*watches: VideoWatch) -> None:
    stalls = [round(w.longest_stall, 2) for w in watches]
    assert max(stalls) < 0.5, f"video stalled {stalls} s"


async def _camera_off_reaches(doctor: Page, patient: Page, doctor_id: str) -> None:
    """Signaling works: the doctor turns the camera off and the patient's page shows it."""
    await doctor.click("#camera")
    await expect(patient.locator(f'.tile[data-peer-id="{doctor_id}"]').first).to_have_attribute(
        "data-paused", "true", timeout=5000
    )


async def test_signaling_blip_is_resumed_and_the_video_never_stops(pages: Pages, instance) -> None:
    server = instance()
    room = room_id()
    doctor = await pages.open(room, "dr-blip", "physician", "Dr. Blip", base_url=server.url)
    patient = await pages.open(room, "pt-blip", "patient", "Rui", base_url=server.url)
    await asyncio.sleep(1.5)  # both sides decoding
    consumers = {page: await _consumer_ids(page) for page in (doctor, patient)}
    assert all(len(ids) == 2 for ids in consumers.values())

    with VideoWatch(patient, "dr-blip") as at_patient, VideoWatch(doctor, "pt-blip") as at_doctor:
        await asyncio.sleep(0.5)
        server.cut_client_sockets()
        for page in (doctor, patient):
            await expect(page.locator("#status")).to_have_attribute(
                "data-state", "connected", timeout=10000
            )
        await asyncio.sleep(1.0)

    _assert_no_stall(at_patient, at_doctor)
    # Resumed, not rejoined: the same consumers still carry the media.
    for page in (doctor, patient):
        assert await _consumer_ids(page) == consumers[page]
    await _camera_off_reaches(doctor, patient, "dr-blip")


async def test_a_killed_control_plane_is_resumed_on_its_restart_and_video_never_stops(
    pages: Pages, instance
) -> None:
    server = instance()
    room = room_id()
    doctor = await pages.open(room, "dr-kill", "physician", "Dr. Kill", base_url=server.url)
    patient = await pages.open(room, "pt-kill", "patient", "Ivo", base_url=server.url)
    await asyncio.sleep(1.5)
    consumers = {page: await _consumer_ids(page) for page in (doctor, patient)}

    with VideoWatch(patient, "dr-kill") as at_patient, VideoWatch(doctor, "pt-kill") as at_doctor:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.kill)  # kill -9: no goodbye to anyone
        await asyncio.to_thread(server.start)
        for page in (doctor, patient):
            await expect(page.locator("#status")).to_have_attribute(
                "data-state", "connected", timeout=15000
            )
        await asyncio.sleep(1.0)

    _assert_no_stall(at_patient, at_doctor)
    for page in (doctor, patient):
        assert await _consumer_ids(page) == consumers[page]  # resumed, not rejoined
    await _camera_off_reaches(doctor, patient, "dr-kill")


async def test_a_cut_sfu_link_goes_unnoticed_by_the_pages(pages: Pages, stack: Stack) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-rpc", "physician", "Dr. Link")
    patient = await pages.open(room, "pt-rpc", "patient", "Bia")
    await asyncio.sleep(1.5)
    port = urlparse(stack.sfu.url).port
    assert port is not None

    with VideoWatch(patient, "dr-rpc") as at_patient, VideoWatch(doctor, "pt-rpc") as at_doctor:
        await asyncio.sleep(0.5)
        cut_connections_to(port)  # every control plane's RPC link to the node
        await asyncio.sleep(1.5)

    _assert_no_stall(at_patient, at_doctor)
    for page in (doctor, patient):
        await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    # Signaling goes through the re-made link.
    await _camera_off_reaches(doctor, patient, "dr-rpc")


async def test_a_killed_media_worker_moves_the_call_and_video_comes_back(
    pages: Pages, stack: Stack, redis
) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-wk", "physician", "Dr. Worker")
    patient = await pages.open(room, "pt-wk", "patient", "Eva")
    await asyncio.sleep(1.5)
    before = {page: await _consumer_ids(page) for page in (doctor, patient)}
    old = await RoomState(redis).get_room(room)
    assert old is not None

    os.kill(old.workerPid, signal.SIGKILL)
    for page, sender in ((doctor, "pt-wk"), (patient, "dr-wk")):
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "connected", timeout=10000
        )
        # New consumers, in the room made again on the live worker, decode video.
        for _ in range(100):
            ids = await _consumer_ids(page)
            if ids and not set(ids) & set(before[page]):
                try:
                    if (await stream_from(page, sender, "video"))["framesDecoded"] > 10:
                        break
                except AssertionError:
                    pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no new video from {sender}")
    moved = await RoomState(redis).get_room(room)
    assert moved is not None and moved.routerId != old.routerId


async def test_the_other_side_shows_reconnecting_while_a_participant_is_away(
    pages: Pages,
) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-away", "physician", "Dr. Away")
    patient = await pages.open(room, "pt-away", "patient", "Lia")
    tile = doctor.locator('.tile[data-peer-id="pt-away"][data-source="camera"]')

    # The patient's connection drops and stays down for a moment.
    await patient.evaluate(
        "() => { const io = window.telemed.call.socket.io; io.reconnection(false); "
        "io.engine.close(); }"
    )
    await expect(tile).to_have_attribute("data-reconnecting", "true", timeout=5000)
    await expect(tile.locator(".reconnecting-label")).to_be_visible()
    await expect(patient.locator("#status")).to_have_attribute("data-state", "reconnecting")

    await patient.evaluate(
        "() => { const s = window.telemed.call.socket; s.io.reconnection(true); s.connect(); }"
    )
    await expect(tile).to_have_attribute("data-reconnecting", "false", timeout=10000)
    await expect(patient.locator("#status")).to_have_attribute(
        "data-state", "connected", timeout=10000
    )


async def test_ended_session_says_so_and_does_not_reconnect(pages: Pages, stack: Stack) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-end", "physician", "Dr. End")
    patient = await pages.open(room, "pt-end", "patient", "Noa")
    await expect(doctor.locator('.tile[data-peer-id="pt-end"] video')).to_have_js_property(
        "readyState", 4, timeout=10000
    )
    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    coordinator = stack.tokens.mint_api(subject="coord-end", role="coordinator", clinic="clinic-1")

    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.url}/api/telemedicine/session/end",
            json={"sessionId": session_id},
            headers={"Authorization": f"Bearer {coordinator}"},
        ) as response:
            assert response.status == 200, await response.text()

    for page in (doctor, patient):
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "ended", timeout=10000)
        await expect(status).to_have_text("The consultation has ended")
        await expect(page.locator("#error")).to_contain_text("The consultation has ended")
    await asyncio.sleep(2.0)
    for page in (doctor, patient):
        assert await page.evaluate("window.telemed.call.socket.connected") is False
        await expect(page.locator("#status")).to_have_attribute("data-state", "ended")
