"""The consultation page in headless Chromium: two browsers (physician and
patient) with fake camera, microphone and screen through the real SFU."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from controlplane.media.room_state import RoomState
from tests.e2e.conftest import (
    Pages,
    decoding,
    room_id,
    screenshot,
    stream_from,
    wait_decoding,
)

pytestmark = pytest.mark.e2e


async def _eventually(read, timeout: float = 10.0):
    """Poll an async reader until it returns a truthy value (or time runs out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = await read()
    while not value and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        value = await read()
    return value


def _tile(page: Page, peer_id: str, source: str = "camera"):
    return page.locator(f'.tile[data-peer-id="{peer_id}"][data-source="{source}"]')


async def _video_width(page: Page, peer_id: str, source: str = "camera") -> int:
    width: int = await _tile(page, peer_id, source).locator("video").evaluate("v => v.videoWidth")
    return width


async def test_physician_and_patient_pages_see_and_hear_each_other(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-web", "physician", "Dr. Web")
    patient = await pages.open(room, "pt-web", "patient", "Maria")

    for page, other, caption in (
        (doctor, "pt-web", "Maria (patient)"),
        (patient, "dr-web", "Dr. Web (physician)"),
    ):
        await expect(_tile(page, other).locator("figcaption")).to_have_text(caption)
        await wait_decoding(page, other)
        assert await _eventually(lambda p=page, o=other: _video_width(p, o)) > 0
        audio_before = (await stream_from(page, other, "audio"))["packetsReceived"]
        await asyncio.sleep(1.0)
        audio_after = (await stream_from(page, other, "audio"))["packetsReceived"]
        assert audio_after > audio_before, f"no audio packets from {other}"
        # One tile per remote participant plus the local preview.
        assert await page.locator(".tile").count() == 2
        await expect(page.locator("#status")).to_have_text("Connected")

    # The consultation's media profile was applied to the local camera (720p target).
    await asyncio.sleep(3.5)  # one stats interval
    report = await doctor.evaluate("window.telemed.lastReport()")
    assert report is not None
    outbound_video = [
        s for s in report["streams"] if s["direction"] == "outbound" and s["kind"] == "video"
    ]
    assert outbound_video and outbound_video[0].get("frameWidth", 0) > 0
    assert await doctor.locator("#quality").get_attribute("data-quality") in (
        "good",
        "degraded",
        "poor",
    )

    await screenshot(doctor, "physician-page")
    await screenshot(patient, "patient-page")
    assert not [e for e in pages.console.get("dr-web", []) if e.startswith("pageerror")]


async def test_camera_off_pauses_video_on_the_other_side(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-cam", "physician", "Dr. Cam")
    patient = await pages.open(room, "pt-cam", "patient", "Ana")
    await wait_decoding(patient, "dr-cam")

    await doctor.get_by_role("button", name="Turn camera off").click()
    await expect(doctor.get_by_role("button", name="Turn camera on")).to_have_attribute(
        "aria-pressed", "false"
    )
    await expect(_tile(patient, "dr-cam")).to_have_attribute("data-paused", "true")
    await asyncio.sleep(0.5)
    first, second = await decoding(patient, "dr-cam", seconds=1.5)
    assert second - first <= 1, "video kept decoding with the camera off"

    await doctor.get_by_role("button", name="Turn camera on").click()
    await expect(_tile(patient, "dr-cam")).to_have_attribute("data-paused", "false")
    await wait_decoding(patient, "dr-cam")


async def test_screen_share_is_a_separate_tile_that_goes_away(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-scr", "physician", "Dr. Screen")
    patient = await pages.open(room, "pt-scr", "patient", "Rui")
    await wait_decoding(patient, "dr-scr")

    await doctor.get_by_role("button", name="Share your screen").click()
    screen_tile = _tile(patient, "dr-scr", "screen")
    await expect(screen_tile).to_be_visible(timeout=10000)
    await expect(screen_tile.locator("figcaption")).to_have_text("Dr. Screen: screen")
    await wait_decoding(patient, "dr-scr", "screen")
    assert (
        await patient.locator(".tile").count() == 3
    )  # own preview, doctor's camera, doctor's screen
    await wait_decoding(patient, "dr-scr", "camera")  # the camera keeps going alongside

    await doctor.get_by_role("button", name="Stop sharing your screen").click()
    await expect(screen_tile).to_have_count(0, timeout=10000)
    await expect(_tile(patient, "dr-scr", "camera")).to_have_count(1)


async def test_leave_removes_the_tile_on_the_other_side(pages: Pages, redis) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-bye", "physician", "Dr. Bye")
    patient = await pages.open(room, "pt-bye", "patient", "Leo")
    await wait_decoding(doctor, "pt-bye")

    await patient.get_by_role("button", name="Leave the consultation").click()
    await expect(patient.locator("#status")).to_have_text("You left the consultation")
    await expect(_tile(doctor, "pt-bye")).to_have_count(0, timeout=10000)
    snapshot = await RoomState(redis).snapshot(room)
    assert [p["peerId"] for p in snapshot["peers"]] == ["dr-bye"]


async def test_reported_stats_reach_the_server_and_pass_validation(pages: Pages, redis) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-st", "physician", "Dr. Stats")
    patient = await pages.open(room, "pt-st", "patient", "Bia")
    await wait_decoding(doctor, "pt-st")
    state = RoomState(redis)

    report = None
    # Bitrates are deltas between two samples: the second report (~6 s) has them.
    for _ in range(150):
        report = await state.client_stats(room, "dr-st")
        if report and any(
            s["direction"] == "inbound" and s["kind"] == "video" and s.get("bitrate", 0) > 0
            for s in report["streams"]
        ):
            break
        await asyncio.sleep(0.1)
    assert report is not None, "no stats report stored for the physician"
    assert report["quality"] in ("good", "degraded", "poor")
    assert report["peerId"] == "dr-st"
    kinds = {(s["direction"], s["kind"]) for s in report["streams"]}
    assert kinds >= {
        ("outbound", "audio"),
        ("outbound", "video"),
        ("inbound", "audio"),
        ("inbound", "video"),
    }
    inbound_video = next(
        s for s in report["streams"] if s["direction"] == "inbound" and s["kind"] == "video"
    )
    assert inbound_video["peerId"] == "pt-st"
    assert inbound_video["frameWidth"] > 0 and inbound_video["bitrate"] > 0
    assert (
        0 <= report["connection"]["roundTripTime"] < 1.0
    )  # seconds, from the selected candidate pair
    # No refusals in the page's console (the server validated every report).
    assert not [e for e in pages.console["dr-st"] if "stats report refused" in e]
    await patient.close()


async def test_page_reconnects_after_the_socket_drops(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-rc", "physician", "Dr. Reconnect")
    patient = await pages.open(room, "pt-rc", "patient", "Eva")
    await wait_decoding(patient, "dr-rc")

    # Drop the doctor's Socket.IO connection from underneath the page.
    await doctor.evaluate("window.telemed.call.socket.io.engine.close()")
    await expect(doctor.locator("#status")).to_have_attribute(
        "data-state", "reconnecting", timeout=5000
    )
    await expect(doctor.locator("#status")).to_have_attribute(
        "data-state", "connected", timeout=15000
    )
    # Same page, no reload: the patient decodes the doctor's video again, and vice versa.
    await wait_decoding(patient, "dr-rc", timeout=15)
    await wait_decoding(doctor, "pt-rc", timeout=15)


async def test_page_works_at_phone_width_with_labelled_buttons(pages: Pages) -> None:
    room = room_id()
    phone = await pages.open(
        room, "pt-phone", "patient", "Zé", viewport={"width": 375, "height": 740}
    )
    for name in (
        "Turn microphone off",
        "Turn camera off",
        "Share your screen",
        "Leave the consultation",
    ):
        button = phone.get_by_role("button", name=name)
        await expect(button).to_be_visible()
        box = await button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    overflow = await phone.evaluate("document.scrollingElement.scrollWidth")
    assert overflow <= 375
    await screenshot(phone, "patient-phone-width")


async def test_expired_link_shows_a_clear_message(pages: Pages, stack) -> None:
    import time

    room = room_id()
    context = await pages.browser.new_context()
    pages.opened.append(context)
    page = await context.new_page()
    token = stack.tokens.mint(
        participant_id="pt-exp",
        role="patient",
        room_id=room,
        now=int(time.time()) - 7200,
        ttl=60,
    )
    await page.goto(f"{stack.url}/consult/{room}#token={token}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "failed", timeout=10000)
    await expect(page.get_by_role("alert")).to_have_text("This link has expired.")
    assert "token=" not in page.url  # the token is taken out of the address bar


async def test_browser_page_and_python_peer_exchange_media(pages: Pages, stack, peers) -> None:
    from telemed_client import MediaPeer

    room = room_id()
    doctor = await pages.open(room, "dr-mix", "physician", "Dr. Mix")
    patient = MediaPeer(stack.url, stack.token(room, "pt-py", "patient", display_name="Py"))
    peers.append(patient)
    await patient.connect()
    await patient.join(room)
    await patient.start_sending()
    await patient.start_receiving()

    # Python -> browser: the page decodes the synthetic 320x240 pattern and gets audio.
    await wait_decoding(doctor, "pt-py")
    assert await _eventually(lambda: _video_width(doctor, "pt-py")) == 320
    audio = await stream_from(doctor, "pt-py", "audio")
    await asyncio.sleep(1.0)
    assert (await stream_from(doctor, "pt-py", "audio"))["packetsReceived"] > audio[
        "packetsReceived"
    ]

    # Browser -> Python: aiortc decodes the page's fake camera and microphone.
    video = await patient.wait_for_frames("dr-mix", "video", count=15)
    assert video.width > 0 and video.height > 0
    await patient.wait_for_frames("dr-mix", "audio", count=25)
    assert patient.errors == []


async def test_mic_off_shows_muted_on_the_other_side_and_stops_audio(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-mic", "physician", "Dr. Mic")
    patient = await pages.open(room, "pt-mic", "patient", "Caio")
    await wait_decoding(doctor, "pt-mic")

    await patient.get_by_role("button", name="Turn microphone off").click()
    await expect(_tile(doctor, "pt-mic")).to_have_attribute("data-muted", "true")
    await expect(_tile(doctor, "pt-mic").locator(".muted-label")).to_be_visible()
    await asyncio.sleep(0.5)
    before = (await stream_from(doctor, "pt-mic", "audio"))["packetsReceived"]
    await asyncio.sleep(1.0)
    assert (await stream_from(doctor, "pt-mic", "audio"))["packetsReceived"] - before <= 2

    await patient.get_by_role("button", name="Turn microphone on").click()
    await expect(_tile(doctor, "pt-mic")).to_have_attribute("data-muted", "false")
    before = (await stream_from(doctor, "pt-mic", "audio"))["packetsReceived"]
    await asyncio.sleep(1.0)
    assert (await stream_from(doctor, "pt-mic", "audio"))["packetsReceived"] > before + 10


async def test_emergency_profile_is_applied_to_the_camera(pages: Pages) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-er", "physician", "Dr. ER", call_type="emergency")
    await doctor.wait_for_function(
        "() => window.telemed.call.producers.has('camera')", timeout=10000
    )
    applied = await doctor.evaluate(
        """() => {
            const producer = window.telemed.call.producers.get('camera');
            const settings = producer.track.getSettings();
            const encoding = producer.rtpSender.getParameters().encodings[0];
            return {width: settings.width, height: settings.height, frameRate: settings.frameRate,
                    maxBitrate: encoding.maxBitrate,
                    codec: producer.rtpParameters.codecs[0].mimeType,
                    profile: window.telemed.call.profile.callType};
        }"""
    )
    assert applied["profile"] == "emergency"
    assert (applied["width"], applied["height"]) == (640, 480)
    assert applied["frameRate"] == 15
    assert applied["maxBitrate"] == 1_000_000
    assert applied["codec"].lower() == "video/vp8"
