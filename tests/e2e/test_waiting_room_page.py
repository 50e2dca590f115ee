"""The waiting room in the browser (issue 13): a patient page waits, with its own
camera preview and no media from or to the room (the SFU's consumer count), the
physician's page lists it and lets it in with a click; both then decode each
other; "To waiting room" sends it back and its media stops."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack
from tests.e2e.conftest import Pages, inbound, room_id, wait_decoding
from tests.integration.api_client import Api
from tests.integration.test_waiting_room import settled_consumers, sfu_consumers

pytestmark = pytest.mark.e2e


async def test_the_physician_admits_a_waiting_patient_from_the_page(
    stack: Stack, pages: Pages, instance
) -> None:
    cp = instance(TELEMED_WAITING_ROOM_TYPES="default")
    room = room_id()
    doctor = await pages.open(room, "dr-wr-web", "physician", "Dr Ana", base_url=cp.url)
    await doctor.wait_for_selector("#console:not([hidden])", timeout=10000)
    baseline = await sfu_consumers(stack)
    patient = await pages.open(
        room, "pt-wr-web", "patient", "Paciente", base_url=cp.url, wait_connected=False
    )
    await patient.wait_for_selector('#status[data-state="waiting"]', timeout=15000)
    await patient.wait_for_selector("#waiting-room:not([hidden])")
    await patient.wait_for_selector('.tile.local[data-source="camera"] video')  # its preview
    entry = '#waiting-list li[data-peer-id="pt-wr-web"]'
    await doctor.wait_for_selector(entry, timeout=10000)
    assert "Paciente" in await doctor.inner_text(entry)
    await asyncio.sleep(2)
    assert await sfu_consumers(stack) == baseline
    assert await inbound(patient) == [] and await inbound(doctor) == []
    assert await patient.locator(".tile:not(.local)").count() == 0

    await doctor.click(f'{entry} button:has-text("Admit")')
    await patient.wait_for_selector('#status[data-state="connected"]', timeout=15000)
    assert await patient.locator("#waiting-room").is_hidden()
    await doctor.wait_for_selector(f"{entry}", state="detached", timeout=5000)
    await wait_decoding(patient, "dr-wr-web")
    await wait_decoding(doctor, "pt-wr-web")
    assert await settled_consumers(stack, baseline + 4) == baseline + 4

    person = '#people-list li[data-peer-id="pt-wr-web"]'
    await doctor.click(f'{person} button:has-text("To waiting room")')
    await patient.wait_for_selector('#status[data-state="waiting"]', timeout=10000)
    await patient.wait_for_selector("#waiting-room:not([hidden])")
    assert await settled_consumers(stack, baseline) == baseline
    await doctor.wait_for_selector(entry, timeout=5000)  # listed as waiting again


async def test_the_page_outlines_the_active_speaker(
    stack: Stack, pages: Pages, peers: list[MediaPeer]
) -> None:
    """A physician's page and a Python patient that talks (a steady tone; the fake
    browser microphone only beeps, too briefly to count as speech): the patient's
    tile is outlined while it speaks, and no longer once its microphone is off."""
    room = room_id()
    doctor = await pages.open(room, "dr-as-web", "physician", "Dr Ana")
    patient = MediaPeer(stack.url, stack.token(room, "pt-as-web", "patient", display_name="P"))
    peers.append(patient)
    await patient.connect()
    await patient.join(room)
    await patient.start_sending()
    speaking = '.tile[data-peer-id="pt-as-web"][data-source="camera"][data-speaking="true"]'
    await doctor.wait_for_selector(speaking, timeout=10000)
    await patient.request("pauseProducer", {"producerId": patient.producers["mic"].id})
    await doctor.wait_for_selector(speaking, state="detached", timeout=10000)


async def test_the_physicians_console_times_writes_a_note_and_ends_the_consultation(
    stack: Stack, pages: Pages
) -> None:
    """The session's physician sees the timer run, writes a clinical note from the
    page (stored encrypted, read back through the API) and ends the consultation;
    the patient's page has no console and sees the end."""
    room = room_id()
    doctor = await pages.open(room, "seed-dr", "physician", "Dr Seed")
    patient = await pages.open(room, "pt-console", "patient", "Paciente")
    await doctor.wait_for_selector("#physician-tools:not([hidden])", timeout=10000)
    assert await patient.locator("#console").is_hidden()
    first = await doctor.inner_text("#timer")
    await asyncio.sleep(2.2)
    assert await doctor.inner_text("#timer") != first
    assert await doctor.inner_text("#time-left") == "(max 1:00:00)"

    await doctor.fill("#record-text", "Paciente refere cefaleia há 2 dias.")
    await doctor.click('#record-form button[type="submit"]')
    await doctor.wait_for_selector('#record-status:has-text("Saved")', timeout=10000)
    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    async with aiohttp.ClientSession() as http:
        read = await Api(stack, http).call(
            "GET", f"session/{session_id}/records", Api(stack, http).token("seed-dr", "physician")
        )
    assert [(r["kind"], r["text"]) for r in read.body["records"]] == [
        ("note", "Paciente refere cefaleia há 2 dias.")
    ]
    stored = stack.psql(
        f"SELECT encode(body_enc, 'escape') FROM clinical_records WHERE session_id = '{session_id}'"
    )
    assert "cefaleia" not in stored  # encrypted at rest

    await doctor.click("#end-consultation")
    await patient.wait_for_selector('#status[data-state="ended"]', timeout=10000)
    assert stack.psql(f"SELECT status FROM sessions WHERE id = '{session_id}'") == "ended"


async def test_the_console_warns_five_minutes_before_the_maximum_duration(
    stack: Stack, pages: Pages, instance
) -> None:
    cp = instance(TELEMED_MAX_DURATIONS="consultation=290")
    doctor = await pages.open(room_id(), "seed-dr", "physician", "Dr Seed", base_url=cp.url)
    await doctor.wait_for_selector('#time-left[data-warning="true"]', timeout=10000)
    assert (await doctor.inner_text("#time-left")).endswith("left")
