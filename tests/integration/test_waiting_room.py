"""The waiting room (issue 13) with real peers on a control plane with the default
policy (a consultation's patient waits): no media to or from a waiting patient
(checked in the SFU's own consumer count), admission, back to waiting, denial,
removal with a banned token, a second clinician admitting when the first has
left, a reconnect that keeps the patient waiting; every change audited."""

from __future__ import annotations

import asyncio
import json

import pytest

from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id
from tests.fault_injection import cut_socket_of

pytestmark = pytest.mark.integration


@pytest.fixture
def waiting_cp(instance):
    return instance(TELEMED_WAITING_ROOM_TYPES="default")


async def sfu_consumers(stack: Stack) -> int:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=10)
    try:
        return int((await client.request("getInfo", {}))["consumers"])
    finally:
        await client.close()


async def settled_consumers(stack: Stack, expected: int) -> int:
    """The SFU's consumer count once it reaches ``expected`` (or after 5 s)."""
    count = await sfu_consumers(stack)
    for _ in range(50):
        if count == expected:
            break
        await asyncio.sleep(0.1)
        count = await sfu_consumers(stack)
    return count


async def enter(peer: MediaPeer, room: str) -> dict:
    await peer.connect()
    joined = await peer.join(room)
    await peer.start_sending()
    await peer.start_receiving()
    return joined


async def put_out(peer: MediaPeer) -> None:
    """The server closes the peer's connection (it was denied or removed)."""
    for _ in range(50):
        if not peer.sio.connected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the connection was not closed")


async def join_refusal(url: str, token: str, room: str, peers: list[MediaPeer]) -> str:
    """The error code a new connection with ``token`` gets on join."""
    peer = MediaPeer(url, token)
    peers.append(peer)
    await peer.connect()
    with pytest.raises(SignalingError) as refused:
        await peer.join(room)
    return refused.value.code


def audited(stack: Stack, room: str) -> list[str]:
    rows = stack.psql(
        "SELECT string_agg(action || ':' || (details->>'participant'), ',' ORDER BY id) "
        f"FROM audit_log WHERE resource_id = '{room}' AND action LIKE 'room.admission.%'"
    )
    return rows.split(",") if rows else []


async def test_a_patient_waits_without_media_until_admitted_and_goes_back_to_waiting(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    room = new_room_id("wr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-wr", "physician"))
    patient = MediaPeer(waiting_cp.url, stack.token(room, "pt-wr", "patient"))
    peers.extend([doctor, patient])
    baseline = await sfu_consumers(stack)
    joined = await enter(doctor, room)
    assert joined["admission"]["state"] == "in_call" and joined["waiting"] == []

    joined = await enter(patient, room)
    assert joined["admission"]["state"] == "waiting"
    assert joined["peers"] == [] and joined["producers"] == []
    assert joined["clinicianPresent"] is True
    listed = await doctor.wait_for_event("waitingList", lambda d: bool(d["waiting"]))
    assert [w["peerId"] for w in listed["waiting"]] == ["pt-wr"]
    with pytest.raises(SignalingError) as refused:
        await patient.request("consume", {"rtpCapabilities": joined["routerRtpCapabilities"]})
    assert refused.value.code == "NOT_ADMITTED"
    await asyncio.sleep(2)  # both send meanwhile: nothing may flow
    assert await sfu_consumers(stack) == baseline  # no consumer either way, on the SFU
    assert doctor.tracks_from("pt-wr") == [] and patient.received == {}
    assert not any(e.name == "peerJoined" for e in doctor.events)

    admitted = await doctor.request("admitParticipant", {"peerId": "pt-wr"})
    assert admitted["state"] == "in_call" and admitted["changed"] is True
    again = await doctor.request("admitParticipant", {"peerId": "pt-wr"})
    assert again["changed"] is False and again["version"] == admitted["version"]
    news = await patient.wait_for_event("admission", lambda d: d["state"] == "in_call")
    assert [p["peerId"] for p in news["peers"]] == ["dr-wr"]
    await patient.wait_for_frames("dr-wr", "video", count=10)
    await doctor.wait_for_frames("pt-wr", "video", count=10)
    assert await settled_consumers(stack, baseline + 4) == baseline + 4

    back = await doctor.request("removeParticipant", {"peerId": "pt-wr", "to": "waiting"})
    assert back["state"] == "waiting" and back["version"] > admitted["version"]
    await patient.wait_for_event("admission", lambda d: d["state"] == "waiting")
    await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-wr")
    assert await settled_consumers(stack, baseline) == baseline
    listed = await doctor.wait_for_event(
        "waitingList", lambda d: [w["peerId"] for w in d["waiting"]] == ["pt-wr"]
    )
    assert audited(stack, room) == [
        "room.admission.waiting:pt-wr",
        "room.admission.in_call:pt-wr",
        "room.admission.waiting:pt-wr",
    ]


async def test_denied_and_removed_tokens_cannot_walk_back_in(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    room = new_room_id("wr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-ban", "physician"))
    first_token = stack.token(room, "pt-ban", "patient")
    patient = MediaPeer(waiting_cp.url, first_token)
    peers.extend([doctor, patient])
    await enter(doctor, room)
    await enter(patient, room)
    denied = await doctor.request("denyParticipant", {"peerId": "pt-ban"})
    assert denied["state"] == "denied"
    await patient.wait_for_event("admission", lambda d: d["state"] == "denied")
    await put_out(patient)
    assert await join_refusal(waiting_cp.url, first_token, room, peers) == "FORBIDDEN"

    # A new link (a new token) knocks again: waiting, not straight in.
    knocking = MediaPeer(waiting_cp.url, stack.token(room, "pt-ban", "patient"))
    peers.append(knocking)
    assert (await enter(knocking, room))["admission"]["state"] == "waiting"
    await doctor.request("admitParticipant", {"peerId": "pt-ban"})
    await knocking.wait_for_frames("dr-ban", "video", count=5)
    removed = await doctor.request("removeParticipant", {"peerId": "pt-ban", "to": "out"})
    assert removed["state"] == "removed"
    await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-ban")
    await put_out(knocking)
    assert await join_refusal(waiting_cp.url, knocking.token, room, peers) == "FORBIDDEN"


async def test_a_second_clinician_admits_when_the_first_has_left(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    room = new_room_id("wr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-first", "physician"))
    nurse = MediaPeer(waiting_cp.url, stack.token(room, "rn-second", "nurse"))
    patient = MediaPeer(waiting_cp.url, stack.token(room, "pt-second", "patient"))
    peers.extend([doctor, nurse, patient])
    await enter(doctor, room)
    await enter(patient, room)
    await doctor.leave()
    gone = await patient.wait_for_event("clinicianPresence", lambda d: d["present"] is False)
    assert gone == {"present": False}
    joined = await enter(nurse, room)
    assert [w["peerId"] for w in joined["waiting"]] == ["pt-second"]
    await patient.wait_for_event("clinicianPresence", lambda d: d["present"] is True)
    with pytest.raises(SignalingError) as refused:
        await patient.request("admitParticipant", {"peerId": "rn-second"})
    assert refused.value.code == "FORBIDDEN"
    await nurse.request("admitParticipant", {"peerId": "pt-second"})
    await patient.wait_for_frames("rn-second", "video", count=5)
    await nurse.wait_for_frames("pt-second", "video", count=5)


async def test_a_waiting_patient_who_reconnects_still_waits(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    room = new_room_id("wr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-rc", "physician"))
    patient = MediaPeer(waiting_cp.url, stack.token(room, "pt-rc", "patient"), auto_resume=True)
    peers.extend([doctor, patient])
    await enter(doctor, room)
    await enter(patient, room)
    cut_socket_of(patient)
    resumed = await patient.wait_for_event("resumed", timeout=15)
    assert resumed["admission"]["state"] == "waiting"
    assert resumed["peers"] == [] and resumed["producers"] == []
    await asyncio.sleep(1)
    assert doctor.tracks_from("pt-rc") == [] and patient.received == {}
    await doctor.request("admitParticipant", {"peerId": "pt-rc"})
    await patient.wait_for_frames("dr-rc", "video", count=5)


async def test_eight_clinicians_and_a_patient_in_one_emergency_room(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    """An emergency with 8 clinicians (physicians and nurses) and its patient, who
    comes straight in (the policy of emergencies): everyone receives everyone
    else's audio (a tone decoded at the patient from each clinician, and the
    patient's at each clinician) and camera (consumers on the SFU: 9 participants x
    8 others x 2 kinds)."""
    room = new_room_id("er")
    baseline = await sfu_consumers(stack)
    clinicians = [
        MediaPeer(
            waiting_cp.url,
            stack.token(room, f"er-{i}", "physician" if i < 3 else "nurse", call_type="emergency"),
            video_size=(160, 128),
        )
        for i in range(8)
    ]
    patient = MediaPeer(
        waiting_cp.url,
        stack.token(room, "er-patient", "patient", call_type="emergency"),
        video_size=(160, 128),
    )
    everyone = [*clinicians, patient]
    peers.extend(everyone)
    for peer in everyone:
        joined = await enter(peer, room)
        assert joined["admission"]["state"] == "in_call"
    for clinician in clinicians:
        await patient.wait_for_frames(clinician.join_info["peerId"], "audio", count=20, timeout=30)
    assert await settled_consumers(stack, baseline + 9 * 8 * 2) == baseline + 9 * 8 * 2
    # The patient came in last: its media reaches every clinician (a consume's ack
    # can still be on its way when the SFU already counts the consumer).
    for clinician in clinicians:
        await clinician.wait_for_frames("er-patient", "audio", count=5, timeout=30)
    for peer in everyone:
        assert {t.peer_id for t in peer.received.values()} == {
            p.join_info["peerId"] for p in everyone if p is not peer
        }
    assert "room.admission.in_call:er-patient" in audited(stack, room)


async def test_a_patient_admitted_while_reconnecting_comes_back_into_the_call(
    stack: Stack, waiting_cp, peers: list[MediaPeer]
) -> None:
    """The patient's link drops while it waits and the physician admits it before
    it is back: the room hears of it at once, and its resume puts it in the call
    with the room's peers and producers."""
    room = new_room_id("wr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-late", "physician"))
    token = stack.token(room, "pt-late", "patient")
    patient = MediaPeer(waiting_cp.url, token, auto_resume=False)
    peers.extend([doctor, patient])
    await enter(doctor, room)
    await enter(patient, room)
    await doctor.wait_for_event("waitingList", lambda d: bool(d["waiting"]))
    cut_socket_of(patient)
    await doctor.wait_for_event("waitingList", lambda d: bool(d["waiting"]))
    await asyncio.sleep(0.5)  # the server noticed the drop (the participant may resume)
    admitted = await doctor.request("admitParticipant", {"peerId": "pt-late"})
    assert admitted["state"] == "in_call"
    await doctor.wait_for_event("peerJoined", lambda d: d["peerId"] == "pt-late")

    back = MediaPeer(waiting_cp.url, token, auto_resume=False)
    peers.append(back)
    await back.connect()
    resumed = await back.request(
        "resume", {"consultationId": room, "resumeToken": patient.resume_token}
    )
    assert resumed["admission"]["state"] == "in_call"
    assert [p["peerId"] for p in resumed["peers"]] == ["dr-late"]
    assert {p["peerId"] for p in resumed["producers"]} == {"dr-late"}


async def test_two_clinicians_on_two_instances_deciding_at_once_lose_no_change(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    """Admissions are compare-and-set in Redis, with no lock: two clinicians on
    two control planes each send a burst of decisions on the same waiting patient
    at once; every change is computed from the one before it (versions 2, 3, ...
    with no gap and no repeat), the stored version counts every change, and no
    ack is an INTERNAL_ERROR."""
    first, second = (
        instance(TELEMED_WAITING_ROOM_TYPES="default"),
        instance(TELEMED_WAITING_ROOM_TYPES="default"),
    )
    room = new_room_id("wr")
    doctor = MediaPeer(first.url, stack.token(room, "dr-cas", "physician"), send_video=False)
    nurse = MediaPeer(second.url, stack.token(room, "nr-cas", "nurse"), send_video=False)
    patient = MediaPeer(
        second.url, stack.token(room, "pt-cas", "patient"), send_audio=False, send_video=False
    )
    peers.extend([doctor, nurse, patient])
    for peer in (doctor, nurse, patient):
        await peer.connect()
        await peer.join(room)
    assert patient.join_info["admission"]["state"] == "waiting"
    assert patient.join_info["admission"]["version"] == 1

    def burst(peer: MediaPeer, offset: int) -> list:
        calls = []
        for k in range(12):
            if (k + offset) % 2 == 0:
                event, payload = "admitParticipant", {"peerId": "pt-cas"}
            else:
                event, payload = "removeParticipant", {"peerId": "pt-cas", "to": "waiting"}
            calls.append(peer.sio.call(event, payload, timeout=30))
        return calls

    acks = await asyncio.gather(*burst(doctor, 0), *burst(nurse, 1))
    errors = [a["error"]["code"] for a in acks if "error" in a]
    assert set(errors) <= {"CONFLICT"}, errors
    changes = sorted(a["version"] for a in acks if "error" not in a and a["changed"])
    assert changes == list(range(2, 2 + len(changes))), changes
    stored = json.loads(await redis.hget(f"telemed:room:{{{room}}}:admission", "pt-cas"))
    assert stored["version"] == 1 + len(changes)
    waiting = await redis.sismember(f"telemed:room:{{{room}}}:waiting", "pt-cas")
    assert bool(waiting) == (stored["state"] == "waiting")
    # The patient heard the last change last.
    last = await patient.wait_for_event("admission", lambda d: d["version"] == stored["version"])
    assert last["state"] == stored["state"]
