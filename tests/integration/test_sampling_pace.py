"""Call-quality sampling spends the SFU's time where it is needed: a consultation
going well is sampled every third pass, an emergency every pass, and real packet
loss brings a consultation back to every pass.  Read from the quality history
(one entry per sample), on a control plane sampling every 0.5 s."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Iterator

import aiohttp
import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call
from tests.integration.test_call_quality_alerts import packet_loss  # noqa: F401
from tests.integration.test_client_stats import _report

pytestmark = pytest.mark.integration

INTERVAL = 0.5


async def spacing(stack: Stack, url: str, room: str, participant: str, last: int = 4) -> float:
    """Median seconds between the participant's last ``last`` samples."""
    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    token = stack.tokens.mint_api(subject="coord-pace", role="coordinator", clinic="clinic-1")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/api/telemedicine/metrics/quality?sessionId={session_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        body = await response.json()
    history = {p["participantId"]: p["history"] for p in body["participants"]}[participant]
    times = sorted(entry["at"] for entry in history)[-last:]
    return statistics.median(b - a for a, b in itertools.pairwise(times))


async def call(
    stack: Stack, url: str, peers: list[MediaPeer], call_type: str
) -> tuple[str, MediaPeer]:
    room = new_room_id("pace")
    doctor = MediaPeer(url, stack.token(room, f"dr-{room}", "physician", call_type=call_type))
    patient = MediaPeer(url, stack.token(room, f"pt-{room}", "patient", call_type=call_type))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await patient.wait_for_frames(f"dr-{room}", "video", count=10)
    return room, patient


@pytest.fixture
def pace(instance) -> Iterator[str]:
    yield instance(TELEMED_STATS_INTERVAL=str(INTERVAL)).url


async def test_a_calm_consultation_is_sampled_less_than_an_emergency(
    stack: Stack, peers: list[MediaPeer], pace: str
) -> None:
    consultation, _ = await call(stack, pace, peers, "consultation")
    emergency, _ = await call(stack, pace, peers, "emergency")
    await asyncio.sleep(8)
    for room in (consultation, emergency):
        for who in ("dr", "pt"):
            gap = await spacing(stack, pace, room, f"{who}-{room}")
            if room == consultation:
                assert gap >= 2.4 * INTERVAL, (who, gap)  # every third pass
            else:
                assert gap <= 1.6 * INTERVAL, (who, gap)  # every pass


async def test_packet_loss_brings_a_consultation_back_to_every_pass(
    stack: Stack,
    peers: list[MediaPeer],
    pace: str,
    packet_loss: dict,  # noqa: F811
) -> None:
    room, _ = await call(stack, pace, peers, "consultation")
    await asyncio.sleep(6)
    assert await spacing(stack, pace, room, f"pt-{room}") >= 2.4 * INTERVAL
    packet_loss["start"](5)  # ~20% of what reaches the SFU is dropped
    try:
        await asyncio.sleep(5)
        for who in ("dr", "pt"):
            gap = await spacing(stack, pace, room, f"{who}-{room}")
            assert gap <= 1.6 * INTERVAL, (who, gap)
    finally:
        packet_loss["stop"]()


async def test_a_page_reporting_a_slow_path_brings_it_back_to_every_pass(
    stack: Stack, peers: list[MediaPeer], pace: str
) -> None:
    """The patient's own report (reportStats) gives a 400 ms round trip: from
    then on it is sampled every pass while that report is recent."""
    room, patient = await call(stack, pace, peers, "consultation")
    await asyncio.sleep(6)
    assert await spacing(stack, pace, room, f"pt-{room}") >= 2.4 * INTERVAL
    await patient.request("reportStats", _report(patient.producers["camera"].id, rtt=0.4))
    await asyncio.sleep(3)
    assert await spacing(stack, pace, room, f"pt-{room}") <= 1.6 * INTERVAL
