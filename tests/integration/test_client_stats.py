"""Client stats reports: validated by schema, stored as the latest sample per
participant in Redis, limited to the reporter's own streams."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration


def _report(producer_id: str, rtt: float = 0.012) -> dict:
    return {
        "quality": "good",
        "connection": {"roundTripTime": rtt, "availableOutgoingBitrate": 900000},
        "streams": [
            {
                "direction": "outbound",
                "kind": "video",
                "source": "camera",
                "producerId": producer_id,
                "roundTripTime": rtt,
                "jitter": 0.002,
                "packetsLost": 0,
                "packets": 420,
                "lossRatio": 0.0,
                "bitrate": 480000,
                "framesPerSecond": 30,
                "frameWidth": 320,
                "frameHeight": 240,
            },
        ],
    }


async def test_latest_report_is_kept_per_participant(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    camera = doctor.producers["camera"].id
    assert await doctor.request("reportStats", _report(camera, rtt=0.010)) == {"stored": True}
    assert await doctor.request("reportStats", _report(camera, rtt=0.020)) == {"stored": True}

    stored = await RoomState(redis).client_stats(room, "dr-ana")
    assert stored["connection"]["roundTripTime"] == 0.020  # the latest one
    assert stored["streams"][0]["producerId"] == camera
    assert stored["peerId"] == "dr-ana" and stored["receivedAt"] > 0
    assert await RoomState(redis).client_stats(room, "pt-joao") is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(quality="excellent"),
        lambda r: r["streams"][0].update(roundTripTime=-1),
        lambda r: r["streams"][0].update(direction="sideways"),
        lambda r: r["streams"][0].update(bitrate="fast"),
        lambda r: r["streams"][0].update(notes="free text is not accepted"),
        lambda r: r.update(streams=[r["streams"][0]] * 40),
    ],
    ids=[
        "quality",
        "negative-rtt",
        "direction",
        "bitrate-type",
        "unknown-field",
        "too-many-streams",
    ],
)
async def test_invalid_reports_are_refused_and_keep_the_last_good_one(
    stack: Stack, peers: list[MediaPeer], redis, mutate
) -> None:
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    camera = doctor.producers["camera"].id
    await doctor.request("reportStats", _report(camera))
    before = await RoomState(redis).client_stats(room, "dr-ana")

    bad = _report(camera)
    mutate(bad)
    with pytest.raises(SignalingError) as refused:
        await doctor.request("reportStats", bad)
    assert refused.value.code == "VALIDATION_ERROR"
    assert await RoomState(redis).client_stats(room, "dr-ana") == before


async def test_a_report_may_not_describe_someone_elses_stream(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    with pytest.raises(SignalingError) as refused:
        await doctor.request("reportStats", _report(patient.producers["camera"].id))
    assert refused.value.code == "NOT_FOUND"


async def test_stats_go_with_the_participant(stack: Stack, peers: list[MediaPeer], redis) -> None:
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    await doctor.request("reportStats", _report(doctor.producers["camera"].id))
    await doctor.leave()
    assert await RoomState(redis).client_stats(room, "dr-ana") is None


async def test_a_patients_own_reports_raise_no_alert_but_show_in_its_quality_view(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    """Both sides report a 900 ms round trip for 8 s while the SFU measures a
    fast path: the physician's report raises the latency alert (clinicians are
    trusted witnesses), the patient's does not, yet it shows in the patient's
    quality history."""
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    for _ in range(8):
        for peer in (doctor, patient):
            await peer.request("reportStats", _report(peer.producers["camera"].id, rtt=0.9))
        await asyncio.sleep(1.0)

    def alerts(participant: str) -> int:
        return int(
            stack.psql(
                f"SELECT count(*) FROM alerts WHERE room_id = '{room}' "
                f"AND participant_id = '{participant}' AND rule = 'high_latency'"
            )
        )

    assert alerts("dr-ana") == 1
    assert alerts("pt-joao") == 0
    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    token = stack.tokens.mint_api(subject="coord-1", role="coordinator", clinic="clinic-1")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.url}/api/telemedicine/metrics/network?sessionId={session_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            body = await response.json()
    rows = {p["participantId"]: p for p in body["participants"]}
    assert rows["pt-joao"]["latest"]["rtt"] >= 0.9
