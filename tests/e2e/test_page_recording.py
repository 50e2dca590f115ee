"""A browser call recorded: both pages show the recording indicator for as long as
it records (a page that joins meanwhile too), and the downloaded recording holds
both browsers' audio and video, decodable."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack
from tests.e2e.conftest import Pages, room_id, wait_decoding
from tests.integration.api_client import Api
from tests.integration.test_recording_capture import decode_errors

pytestmark = pytest.mark.e2e


def streams_and_errors(path: Path) -> tuple[list[str], str]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = sorted(s["codec_type"] for s in json.loads(probe.stdout)["streams"])
    return kinds, decode_errors(path)[1]


async def test_a_recorded_browser_call_shows_the_indicator_and_is_decodable(
    pages: Pages, stack: Stack, tmp_path: Path
) -> None:
    room = room_id()
    doctor = await pages.open(room, "dr-rec-web", "physician", "Dr. Rec")
    patient = await pages.open(room, "pt-rec-web", "patient", "Lia")
    await wait_decoding(doctor, "pt-rec-web")
    await wait_decoding(patient, "dr-rec-web")
    assert await doctor.locator("#recording").is_hidden()

    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    async with aiohttp.ClientSession() as http:
        api = Api(stack, http)
        version = await api.consent_version("recording")
        granted = await api.call(
            "POST",
            "consent",
            api.token("coord-rec", "coordinator"),
            {"patientId": "seed-pt", "purpose": "recording", "version": version},
        )
        assert granted.status == 201, granted.body
        coordinator = api.token("coord-rec", "coordinator")
        started = await api.call("POST", "recording/start", coordinator, {"sessionId": session_id})
        assert started.status == 200, started.body
        recording_id = started.body["recordingId"]
        for page in (doctor, patient):
            await page.wait_for_selector("#recording:not([hidden])", timeout=5000)
        late = await pages.open(room, "pt-rec-late", "patient", "Companion")
        await late.wait_for_selector("#recording:not([hidden])", timeout=5000)

        await asyncio.sleep(5)
        stopped = await api.call(
            "POST", "recording/stop", coordinator, {"recordingId": recording_id}
        )
        assert stopped.status == 200, stopped.body
        for page in (doctor, patient, late):
            await page.wait_for_selector("#recording[hidden]", state="attached", timeout=5000)

        async with http.get(
            f"{stack.url}/api/telemedicine/recording/{recording_id}/media",
            headers={"Authorization": f"Bearer {coordinator}"},
        ) as response:
            assert response.status == 200
            media = await response.read()
    path = tmp_path / "browser-call.mkv"
    await asyncio.to_thread(path.write_bytes, media)
    kinds, errors = await asyncio.to_thread(streams_and_errors, path)
    # Each browser's camera and microphone, the late page's too: it joined after
    # the start, in a segment of its own, joined on download.
    assert kinds == ["audio"] * 3 + ["video"] * 3, kinds
    assert errors == "", errors
