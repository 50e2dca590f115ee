"""Two real WebRTC peers (pymediasoup + aiortc) in one consultation through a
real mediasoup SFU node: media decoded both ways, state in Redis, clean-up."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


async def _start_pair(
    stack: Stack, peers: list[MediaPeer], room: str
) -> tuple[MediaPeer, MediaPeer]:
    doctor = MediaPeer(stack.url, stack.token(room, "dr-ana", "physician", display_name="Dr. Ana"))
    patient = MediaPeer(stack.url, stack.token(room, "pt-joao", "patient", display_name="João"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    return doctor, patient


async def test_physician_and_patient_decode_each_others_audio_and_video(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)

    for receiver, sender in ((doctor, "pt-joao"), (patient, "dr-ana")):
        video = await receiver.wait_for_frames(sender, "video", count=15)
        audio = await receiver.wait_for_frames(sender, "audio", count=25)
        assert (video.width, video.height) == (320, 240)
        # The sender plays a 400 Hz tone at 0.3 of full scale: decoded audio is not silence.
        await asyncio.sleep(0.5)
        assert audio.max_rms > 0.05, f"decoded audio from {sender} is silent"
    assert doctor.errors == [] and patient.errors == []

    snapshot = await RoomState(redis).snapshot(room)
    assert snapshot is not None
    assert snapshot["nodeId"] == "sfu-test-1"
    by_peer = {p["peerId"]: p for p in snapshot["peers"]}
    assert set(by_peer) == {"dr-ana", "pt-joao"}
    assert by_peer["dr-ana"]["role"] == "physician"
    for peer in by_peer.values():
        assert sorted(p["source"] for p in peer["producers"]) == ["camera", "mic"]
        assert sorted(c["kind"] for c in peer["consumers"]) == ["audio", "video"]
        assert sorted(peer["transports"].values()) == ["recv", "send"]
