"""The waiting room in the browser (issue 13): a patient page waits, with its own
camera preview and no media from or to the room (the SFU's consumer count), the
physician's page lists it and lets it in with a click; both then decode each
other; "To waiting room" sends it back and its media stops."""

from __future__ import annotations

import asyncio

import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack
from tests.e2e.conftest import Pages, inbound, room_id, wait_decoding
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
