"""Two control-plane processes share Redis and the SFU node: participants of one
consultation connected to different instances see and hear each other, and
room events cross instances (the control plane keeps no room state of its own)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from controlplane.devstack import services as ls
from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_instance(stack: Stack) -> Iterator[ls.ManagedProcess]:
    process = ls.start_control_plane(stack.data_dir, stack.control_plane_env())
    yield process
    process.stop()


async def test_peers_on_different_instances_share_a_consultation(
    stack: Stack, second_instance: ls.ManagedProcess, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor = MediaPeer(stack.url, stack.token(room, "dr-one", "physician"))
    patient = MediaPeer(second_instance.url, stack.token(room, "pt-two", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)

    await doctor.wait_for_event("peerJoined", lambda d: d["peerId"] == "pt-two")
    await doctor.wait_for_frames("pt-two", "video", count=10)
    await patient.wait_for_frames("dr-one", "video", count=10)
    await patient.wait_for_frames("dr-one", "audio", count=10)

    snapshot = await RoomState(redis).snapshot(room)
    instances = {p["peerId"]: p for p in snapshot["peers"]}
    assert set(instances) == {"dr-one", "pt-two"}
    peer_rows = [await RoomState(redis).get_participant(room, pid) for pid in instances]
    assert len({row.instance for row in peer_rows}) == 2  # really on two instances

    # A pause on one instance reaches the other instance's participant.
    camera = patient.producers["camera"].id
    await patient.request("pauseProducer", {"producerId": camera})
    await doctor.wait_for_event("producerPaused", lambda d: d["producerId"] == camera)

    await patient.leave()
    await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-two")
    await doctor.leave()
    assert await RoomState(redis).get_room(room) is None


async def test_a_worker_death_moves_the_room_once_for_both_instances(
    stack: Stack, second_instance: ls.ManagedProcess, peers: list[MediaPeer], redis
) -> None:
    """Both instances hear the router die; one makes the room again, and the
    participants of both rejoin that same room and see each other again."""
    room = new_room_id()
    doctor = MediaPeer(stack.url, stack.token(room, "dr-move", "physician"))
    patient = MediaPeer(second_instance.url, stack.token(room, "pt-move", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await patient.wait_for_frames("dr-move", "video", count=5)
    old = await RoomState(redis).get_room(room)
    assert old is not None

    os.kill(old.workerPid, signal.SIGKILL)
    for peer in (doctor, patient):
        await peer.wait_for_event("rejoined", timeout=10)
    moved = await RoomState(redis).get_room(room)
    assert moved is not None and moved.routerId != old.routerId
    for peer, sender in ((doctor, "pt-move"), (patient, "dr-move")):
        for _ in range(100):
            if [t for t in peer.tracks_from(sender, "video") if not t.ended and t.frames >= 5]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no video from {sender} after the move")
    # Still that room: nobody made a second one after the first rejoin.
    assert await RoomState(redis).get_room(room) == moved
    snapshot = await RoomState(redis).snapshot(room)
    assert {p["peerId"] for p in snapshot["peers"]} == {"dr-move", "pt-move"}
