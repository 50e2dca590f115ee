"""A join that asks to receive (issue 14, join fast path): the client loads its
device from the room's capabilities before the join, and the join ack carries its
receive transport and consumers.  Real peers, real SFU: media decoded without a
``createTransport`` or ``consume`` of the subscriber, nothing made for a waiting
participant, a clear error for a room not open yet or a bad ``receive``, and the
step-by-step way taken when the device was loaded from other capabilities."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer, SignalingError
from telemed_client.peer import share_screen
from tests.conftest import Stack, new_room_id, start_call
from tests.integration.test_concurrent_requests import _burst
from tests.integration.test_waiting_room import enter, settled_consumers, sfu_consumers

pytestmark = pytest.mark.integration


async def _in_call(
    stack: Stack, peers: list[MediaPeer], url: str, tag: str
) -> tuple[str, MediaPeer, MediaPeer]:
    """A physician ``dr-<tag>`` in a new call (sending), and its patient ``pt-<tag>``
    connected, not joined."""
    room = new_room_id("rr")
    doctor = MediaPeer(url, stack.token(room, f"dr-{tag}", "physician"))
    patient = MediaPeer(url, stack.token(room, f"pt-{tag}", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor)
    await patient.connect()
    return room, doctor, patient


async def _peer_state(redis, room: str, peer_id: str) -> dict:
    snapshot = await RoomState(redis).snapshot(room)
    assert snapshot is not None
    return {p["peerId"]: p for p in snapshot["peers"]}[peer_id]


async def test_a_subscriber_joining_with_receive_decodes_without_create_or_consume(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room, doctor, patient = await _in_call(stack, peers, stack.url, "rr")
    assert await patient.load_device() is True

    joined = await patient.join(room, receive=True)
    ready = joined["receive"]
    assert "error" not in ready and ready["skipped"] == []
    doctors = {p["producerId"] for p in joined["producers"]}
    assert {c["producerId"] for c in ready["consumers"]} == doctors
    assert sorted(c["kind"] for c in ready["consumers"]) == ["audio", "video"]
    assert all(c["peerId"] == "dr-rr" for c in ready["consumers"])
    state = await _peer_state(redis, room, "pt-rr")
    assert state["transports"] == {ready["transport"]["id"]: "recv"}
    assert all(c["paused"] for c in state["consumers"])  # until the client resumes them

    await patient.start_receiving()
    video = await patient.wait_for_frames("dr-rr", "video", count=10)
    await patient.wait_for_frames("dr-rr", "audio", count=10)
    assert (video.width, video.height) == (320, 240)
    assert "createTransport" not in patient.timings and "consume" not in patient.timings
    assert patient.recv_transport is not None
    assert patient.recv_transport.id == ready["transport"]["id"]
    state = await _peer_state(redis, room, "pt-rr")
    assert not any(c["paused"] for c in state["consumers"])

    # Sending afterwards is the usual way: the physician decodes the patient.
    await patient.start_sending()
    await doctor.wait_for_frames("pt-rr", "video", count=10)
    assert doctor.errors == [] and patient.errors == []


async def test_capabilities_before_the_join_only_for_an_open_room(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id("rr")
    patient = MediaPeer(stack.url, stack.token(room, "pt-first", "patient"))
    peers.append(patient)
    await patient.connect()
    with pytest.raises(SignalingError) as refused:
        await patient.request("getRouterRtpCapabilities")
    assert refused.value.code == "NOT_JOINED"
    assert await patient.load_device() is False
    # The first in the room joins the usual way (there is nothing to receive yet).
    joined = await patient.join(room, receive=True)
    assert "receive" not in joined
    assert patient.device is not None and patient.device.loaded


async def test_a_bad_receive_is_refused_and_joins_nothing(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room, _doctor, patient = await _in_call(stack, peers, stack.url, "bad")
    for receive in ({"rtpCapabilities": "opus"}, {}, {"rtpCapabilities": {}, "extra": 1}):
        with pytest.raises(SignalingError) as refused:
            await patient.request("join", {"consultationId": room, "receive": receive})
        assert refused.value.code == "VALIDATION_ERROR"
    assert await RoomState(redis).participant_ids(room) == ["dr-bad"]
    await patient.join(room)  # the same connection joins afterwards
    await patient.start_receiving()
    await patient.wait_for_frames("dr-bad", "video", count=5)


async def test_a_device_that_decodes_nothing_still_joins(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    """Capabilities without the room's codecs (PCMU only): the join stands, the producers are
    named in ``skipped`` with the reason, no consumer is made."""
    room, _doctor, patient = await _in_call(stack, peers, stack.url, "skip")
    baseline = await sfu_consumers(stack)
    pcmu_only = {
        "codecs": [
            {
                "kind": "audio",
                "mimeType": "audio/PCMU",
                "clockRate": 8000,
                "channels": 1,
                "preferredPayloadType": 0,
            }
        ]
    }
    joined = await patient.request(
        "join", {"consultationId": room, "receive": {"rtpCapabilities": pcmu_only}}
    )
    ready = joined["receive"]
    assert ready["consumers"] == [] and "error" not in ready
    assert len(ready["skipped"]) == 2 and all(s["reason"] for s in ready["skipped"])
    assert joined["peerId"] == "pt-skip" and ready["transport"]["id"]
    assert await sfu_consumers(stack) == baseline


async def test_a_waiting_participant_gets_a_transport_and_nothing_to_receive(
    stack: Stack, instance, peers: list[MediaPeer]
) -> None:
    waiting_cp = instance(TELEMED_WAITING_ROOM_TYPES="default")
    room = new_room_id("rr")
    doctor = MediaPeer(waiting_cp.url, stack.token(room, "dr-wait", "physician"))
    patient = MediaPeer(waiting_cp.url, stack.token(room, "pt-wait", "patient"))
    peers.extend([doctor, patient])
    await enter(doctor, room)
    baseline = await sfu_consumers(stack)
    await patient.connect()
    assert await patient.load_device() is True
    joined = await patient.join(room, receive=True)
    assert joined["admission"]["state"] == "waiting"
    assert joined["receive"]["consumers"] == [] and joined["receive"]["transport"]["id"]
    assert await patient.start_receiving() == []
    await asyncio.sleep(1)
    assert await sfu_consumers(stack) == baseline and patient.received == {}

    await doctor.request("admitParticipant", {"peerId": "pt-wait"})
    await patient.wait_for_frames("dr-wait", "video", count=5)
    assert await settled_consumers(stack, baseline + 2) == baseline + 2


async def test_a_device_loaded_from_other_capabilities_receives_step_by_step(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    """The room made again on a router with other capabilities between the
    preload and the join (simulated: the client is told it loaded other ones):
    what the join made is closed, the device loaded from the ack, and the
    subscriber creates its transport and consumers itself."""
    room, _doctor, patient = await _in_call(stack, peers, stack.url, "other")
    assert await patient.load_device() is True
    patient._loaded_from = {"codecs": [], "headerExtensions": []}

    joined = await patient.join(room, receive=True)
    unused = joined["receive"]["transport"]["id"]
    await patient.start_receiving()
    await patient.wait_for_frames("dr-other", "video", count=5)
    assert "createTransport" in patient.timings and "consume" in patient.timings
    assert patient.recv_transport is not None and patient.recv_transport.id != unused
    for _ in range(50):
        transports = (await _peer_state(redis, room, "pt-other"))["transports"]
        if unused not in transports:
            break
        await asyncio.sleep(0.1)
    assert transports == {patient.recv_transport.id: "recv"}


async def test_a_producer_announced_between_the_join_and_receiving_is_received_too(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    """The join's consumers are those of its moment; a producer announced before
    the client starts receiving (its newProducer had no transport to go to) is
    consumed by start_receiving after them."""
    room, doctor, patient = await _in_call(stack, peers, stack.url, "late")
    assert await patient.load_device() is True
    joined = await patient.join(room, receive=True)
    assert len(joined["receive"]["consumers"]) == 2
    screen = await share_screen(doctor)
    await patient.wait_for_event("newProducer", lambda d: d["producerId"] == screen)

    tracks = await patient.start_receiving()
    assert sorted(t.source for t in tracks) == ["camera", "mic", "screen"]
    shared = [t for t in patient.tracks_from("dr-late", "video") if t.source == "screen"]
    assert len(shared) == 1
    for _ in range(100):
        if shared[0].frames >= 5:
            break
        await asyncio.sleep(0.1)
    assert shared[0].frames >= 5


async def test_a_stalled_media_worker_leaves_the_join_standing_and_receiving_step_by_step(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    """The room's mediasoup worker stopped (SIGSTOP) between the physician's call
    and the patient's ready join: the join is answered (it needs no SFU request
    for a room that exists), its ``receive`` names the failure, and once the
    worker runs again the client makes its transport and consumers itself."""
    quick = instance(SFU_RPC_TIMEOUT="1")
    room, _doctor, patient = await _in_call(stack, peers, quick.url, "stall")
    assert await patient.load_device() is True
    stored = await RoomState(redis).get_room(room)
    assert stored is not None and stored.workerPid
    os.kill(int(stored.workerPid), signal.SIGSTOP)
    try:
        joined = await patient.join(room, receive=True)
    finally:
        os.kill(int(stored.workerPid), signal.SIGCONT)
    assert joined["peerId"] == "pt-stall" and joined["admission"]["state"] == "in_call"
    assert joined["receive"]["error"]["code"] == "SFU_UNAVAILABLE"
    assert "transport" not in joined["receive"] and joined["receive"]["consumers"] == []
    assert "pt-stall" in await RoomState(redis).participant_ids(room)

    await patient.start_receiving()
    await patient.wait_for_frames("dr-stall", "video", count=5)
    assert "createTransport" in patient.timings and "consume" in patient.timings


async def test_a_burst_of_ready_joins_makes_one_participant_one_transport(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    """50 joins with ``receive`` at once on one connection: one joins, the others
    are ALREADY_JOINED (or RATE_LIMITED), and the SFU holds one receive transport and two consumers
    more, as Redis says; the capabilities asked 50 times before the join too."""
    room, _doctor, patient = await _in_call(stack, peers, stack.url, "burst")
    asked = await _burst(patient, "getRouterRtpCapabilities", [{}] * 50)
    assert set(asked) <= {"ok", "RATE_LIMITED"} and asked["ok"] >= 1
    assert await patient.load_device() is True
    assert patient.device is not None
    caps = patient.device.rtpCapabilities.model_dump(exclude_none=True)
    baseline = await sfu_consumers(stack)

    payload = {"consultationId": room, "receive": {"rtpCapabilities": caps}}
    outcome = await _burst(patient, "join", [payload] * 50)

    # (the caps burst used part of the connection's event budget: some are refused)
    assert outcome["ok"] == 1 and set(outcome) <= {"ok", "ALREADY_JOINED", "RATE_LIMITED"}
    assert await settled_consumers(stack, baseline + 2) == baseline + 2
    state = await _peer_state(redis, room, "pt-burst")
    assert list(state["transports"].values()) == ["recv"] and len(state["consumers"]) == 2
