"""Leaving, disconnecting and pausing: what the other side sees, and that the
room and its Redis state are gone once the consultation ends."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.media.room_records import RoomRecord
from controlplane.media.room_state import ROOMS_KEY, RoomState
from controlplane.placement.sfu_client import SfuClient, SfuRequestError
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration


# The waiting room's keys outlive the room (a ban holds as long as the session can
# be joined) and expire on their own.
WAITING_ROOM_KEYS = (":admission", ":waiting", ":banned")


async def _room_keys(redis, room: str) -> list[str]:
    """The room's live-state keys left (the waiting room's checked to expire)."""
    keys = sorted([k async for k in redis.scan_iter(match=f"telemed:room:{{{room}}}*")])
    kept = [k for k in keys if str(k).endswith(WAITING_ROOM_KEYS)]
    for key in kept:
        assert 0 < await redis.ttl(key) <= 24 * 3600, key
    return [k for k in keys if k not in kept]


async def _sfu_info(stack: Stack) -> dict:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        return await client.request("getInfo")
    finally:
        await client.close()


async def test_leave_notifies_other_peer_and_last_leave_removes_room(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await doctor.wait_for_frames("pt-joao", "video", count=5)
    router_id = (await RoomState(redis).get_room(room)).routerId
    transport_ids = [
        tid
        for peer in ("dr-ana", "pt-joao")
        for tid in await RoomState(redis).transports(room, peer)
    ]
    assert len(transport_ids) == 4
    patient_consumers_at_doctor = {t.consumer_id for t in doctor.tracks_from("pt-joao")}
    assert len(patient_consumers_at_doctor) == 2

    await patient.leave()
    left = await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-joao")
    assert left["reason"] == "left"
    # Both of the doctor's consumers of the patient's media are closed by the server.
    for consumer_id in patient_consumers_at_doctor:
        await doctor.wait_for_event("consumerClosed", lambda d, c=consumer_id: d["consumerId"] == c)
    assert all(doctor.received[c].ended for c in patient_consumers_at_doctor)

    state = RoomState(redis)
    snapshot = await state.snapshot(room)
    assert [p["peerId"] for p in snapshot["peers"]] == ["dr-ana"]
    assert snapshot["peers"][0]["consumers"] == []  # nothing left to receive

    await doctor.leave()
    assert await state.get_room(room) is None
    assert await _room_keys(redis, room) == []
    assert room not in await redis.smembers("telemed:rooms")
    assert await redis.get(f"telemed:router:{router_id}") is None
    assert room not in await redis.smembers("telemed:sfu:node:sfu-test-1:rooms")
    # On the SFU node: the room's router and every transport of it are closed.
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        for transport_id in transport_ids:
            with pytest.raises(SfuRequestError) as gone:
                await client.request("getTransportStats", {"transportId": transport_id})
            assert gone.value.error_type == "NOT_FOUND"
        with pytest.raises(SfuRequestError) as router_gone:
            await client.request("getRouterRtpCapabilities", {"routerId": router_id})
        assert router_gone.value.error_type == "NOT_FOUND"
    finally:
        await client.close()


async def test_disconnect_without_leave_cleans_up_after_the_resume_window(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=5)

    # The connection goes without a leave (a closed laptop lid): the patient may
    # come back within the resume window (3 s in the tests), then it is removed.
    await patient.sio.disconnect()
    await doctor.wait_for_event("peerReconnecting", lambda d: d["peerId"] == "pt-joao")
    left = await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-joao")
    assert left["reason"] == "timeout"

    await doctor.sio.disconnect()
    for _ in range(100):
        if await _room_keys(redis, room) == []:
            break
        await asyncio.sleep(0.1)
    assert await _room_keys(redis, room) == []
    assert room not in await redis.smembers("telemed:rooms")


async def test_pausing_a_producer_stops_its_frames_at_the_receiver(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    video = await patient.wait_for_frames("dr-ana", "video", count=10)
    camera_id = doctor.producers["camera"].id

    await doctor.request("pauseProducer", {"producerId": camera_id})
    paused = await patient.wait_for_event("producerPaused", lambda d: d["producerId"] == camera_id)
    assert paused["peerId"] == "dr-ana"
    await patient.wait_for_event("consumerPaused", lambda d: d["producerId"] == camera_id)
    producers = await RoomState(redis).producers_of(room, "dr-ana")
    assert {p.source: p.paused for p in producers} == {"camera": True, "mic": False}

    await asyncio.sleep(0.5)  # frames in flight drain
    frozen_at = video.frames
    await asyncio.sleep(1.0)
    assert video.frames - frozen_at <= 2, "video kept arriving while the camera was paused"

    await doctor.request("resumeProducer", {"producerId": camera_id})
    await patient.wait_for_event("producerResumed", lambda d: d["producerId"] == camera_id)
    resumed_from = video.frames
    for _ in range(100):
        if video.frames >= resumed_from + 10:
            break
        await asyncio.sleep(0.05)
    assert video.frames >= resumed_from + 10, "video did not come back after resume"


async def test_closing_a_producer_closes_remote_consumers(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "audio", count=5)
    mic_id = doctor.producers["mic"].id
    consumer = next(t for t in patient.tracks_from("dr-ana", "audio"))

    assert (await doctor.request("closeProducer", {"producerId": mic_id})) == {"closed": True}
    await patient.wait_for_event("producerClosed", lambda d: d["producerId"] == mic_id)
    await patient.wait_for_event(
        "consumerClosed", lambda d: d["consumerId"] == consumer.consumer_id
    )
    assert [p.source for p in await RoomState(redis).producers_of(room, "dr-ana")] == ["camera"]
    assert all(c.producerId != mic_id for c in await RoomState(redis).consumers_of(room, "pt-joao"))


async def test_late_joiner_receives_existing_producers(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    doctor = MediaPeer(stack.url, stack.token(room, "dr-late", "physician"))
    peers.append(doctor)
    await doctor.connect()
    await doctor.join(room)
    await doctor.start_sending()
    await doctor.start_receiving()

    patient = MediaPeer(stack.url, stack.token(room, "pt-late", "patient"))
    peers.append(patient)
    await patient.connect()
    info = await patient.join(room)
    assert [p["peerId"] for p in info["peers"]] == ["dr-late"]
    assert sorted(p["source"] for p in info["producers"]) == ["camera", "mic"]
    await patient.start_receiving()
    await patient.wait_for_frames("dr-late", "video", count=5)
    # The doctor learns about the patient's media as it starts (newProducer -> consume).
    await patient.start_sending()
    await doctor.wait_for_frames("pt-late", "video", count=5)
    await doctor.wait_for_frames("pt-late", "audio", count=5)


async def test_a_room_nobody_is_in_is_closed_and_stale_room_ids_are_dropped(
    stack: Stack, redis
) -> None:
    """A room made again after its worker died, that nobody came back to, must not
    hold a router for ever: the control plane closes empty rooms once they are
    older than the live-state TTL, and drops ids of rooms whose state expired."""
    state = RoomState(redis)
    room, ghost = new_room_id("abandoned"), new_room_id("ghost")
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        created = await client.request("createRouter", {"profile": "consultation"})
        await state.create_room(
            RoomRecord(
                roomId=room,
                nodeId="sfu-test-1",
                routerId=created["routerId"],
                callType="consultation",
                createdAt=time.time() - 3600,
            )
        )
        await redis.sadd(ROOMS_KEY, ghost)
        for _ in range(150):  # the sweep runs every 10 s
            if await state.get_room(room) is None and ghost not in await state.room_ids():
                break
            await asyncio.sleep(0.1)
        assert await state.get_room(room) is None
        assert await _room_keys(redis, room) == []
        assert ghost not in await state.room_ids()
        with pytest.raises(SfuRequestError):  # the router is gone from the SFU too
            await client.request("getRouterRtpCapabilities", {"routerId": created["routerId"]})
    finally:
        await client.close()
