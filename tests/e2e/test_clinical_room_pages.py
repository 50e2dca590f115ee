"""Four browsers in one consultation (issue 13): a physician, a nurse, a patient
and a companion.  Patient and companion wait with no media (the SFU's consumer
count); the physician denies the companion and admits the patient; after the
physician leaves, the nurse sends the patient back to waiting and admits them
again; the denied companion's link no longer gets in."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Stack
from tests.e2e.conftest import Pages, room_id, wait_decoding
from tests.integration.test_waiting_room import settled_consumers, sfu_consumers

pytestmark = pytest.mark.e2e


async def test_four_pages_physician_nurse_patient_companion(
    stack: Stack, pages: Pages, instance
) -> None:
    cp = instance(TELEMED_WAITING_ROOM_TYPES="default")
    room = room_id()
    doctor = await pages.open(room, "dr-four", "physician", "Dra. Ana", base_url=cp.url)
    nurse = await pages.open(room, "rn-four", "nurse", "Enf. Bia", base_url=cp.url)
    await wait_decoding(doctor, "rn-four")
    baseline = await sfu_consumers(stack)  # the two clinicians' (2 x 2)
    patient = await pages.open(
        room, "pt-four", "patient", "Paciente", base_url=cp.url, wait_connected=False
    )
    companion = await pages.open(
        room, "cp-four", "companion", "Mãe", base_url=cp.url, wait_connected=False
    )
    for page in (patient, companion):
        await page.wait_for_selector('#status[data-state="waiting"]', timeout=15000)
    for page in (doctor, nurse):
        for who in ("pt-four", "cp-four"):
            await page.wait_for_selector(f'#waiting-list li[data-peer-id="{who}"]', timeout=10000)
    await asyncio.sleep(1.5)
    assert await sfu_consumers(stack) == baseline  # nothing to or from the waiting ones

    await doctor.click('#waiting-list li[data-peer-id="cp-four"] button >> nth=1')  # deny
    await companion.wait_for_selector('#status[data-state="ended"]', timeout=10000)
    await doctor.click('#waiting-list li[data-peer-id="pt-four"] button >> nth=0')  # admit
    await patient.wait_for_selector('#status[data-state="connected"]', timeout=15000)
    for page, other in ((patient, "dr-four"), (patient, "rn-four"), (nurse, "pt-four")):
        await wait_decoding(page, other)
    # The patient joins the call: 2 kinds x (2 clinicians to it + it to 2 clinicians).
    assert await settled_consumers(stack, baseline + 8) == baseline + 8

    await doctor.click("#leave")
    await nurse.wait_for_selector('#people-list li[data-peer-id="dr-four"]', state="detached")
    await nurse.click('#people-list li[data-peer-id="pt-four"] button >> nth=0')  # to waiting
    await patient.wait_for_selector('#status[data-state="waiting"]', timeout=10000)
    await nurse.wait_for_selector('#waiting-list li[data-peer-id="pt-four"]', timeout=10000)
    await nurse.click('#waiting-list li[data-peer-id="pt-four"] button >> nth=0')  # admit
    await patient.wait_for_selector('#status[data-state="connected"]', timeout=15000)
    await wait_decoding(patient, "rn-four")

    # The denied companion's link is spent: the page cannot get back in.
    await companion.reload()
    await companion.wait_for_selector('#status[data-state="failed"]', timeout=15000)
