"""Resume: a dropped signaling connection, a control plane killed with -9 or
stopped with SIGTERM, and the call goes on.  Media never stops (no gap longer
than 0.5 s in the decoded video), the other side sees ``peerReconnecting`` /
``peerReconnected`` and never ``peerLeft``; after the window a participant that
did not come back is removed, its SFU objects closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import cut_socket_of

pytestmark = pytest.mark.integration

MAX_GAP = 0.5


@pytest.fixture
async def rpc(stack: Stack) -> AsyncIterator[SfuClient]:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    yield client
    await client.close()


async def _pair(
    stack: Stack, peers: list[MediaPeer], url: str, room: str, **patient_options: bool
) -> tuple[MediaPeer, MediaPeer]:
    doctor = MediaPeer(url, stack.token(room, "dr-res", "physician"))
    patient = MediaPeer(url, stack.token(room, "pt-res", "patient"), **patient_options)  # type: ignore[arg-type]
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await doctor.wait_for_frames("pt-res", "video", count=10)
    await patient.wait_for_frames("dr-res", "video", count=10)
    return doctor, patient


def _watch_video(doctor: MediaPeer, patient: MediaPeer) -> list:
    """The two video tracks, with their gap measurement starting now."""
    tracks = [patient.tracks_from("dr-res", "video")[0], doctor.tracks_from("pt-res", "video")[0]]
    for track in tracks:
        track.max_gap = 0.0
    return tracks


async def _assert_media_went_on(doctor: MediaPeer, patient: MediaPeer, tracks: list) -> None:
    counts = [t.frames for t in tracks]
    await asyncio.sleep(1.0)
    assert [t.frames for t in tracks] > counts and all(
        t.frames > c + 10 for t, c in zip(tracks, counts, strict=True)
    ), "video stopped"
    gaps = [round(t.max_gap, 3) for t in tracks]
    assert max(gaps) < MAX_GAP, f"video gaps {gaps}"
    for peer in (doctor, patient):
        assert not [e for e in peer.events if e.name == "peerLeft"], "peerLeft inside the window"
        assert peer.resumer is not None and peer.resumer.rejoins == 0


async def _signaling_works(doctor: MediaPeer, patient: MediaPeer) -> None:
    camera = patient.producers["camera"].id
    await patient.request("pauseProducer", {"producerId": camera})
    await doctor.wait_for_event("producerPaused", lambda d: d["producerId"] == camera)
    await patient.request("resumeProducer", {"producerId": camera})


async def test_signaling_blip_resumes_without_a_media_gap(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    server = instance()
    room = new_room_id()
    doctor, patient = await _pair(stack, peers, server.url, room)
    before = await RoomState(redis).snapshot(room)
    tracks = _watch_video(doctor, patient)

    server.cut_client_sockets()

    for peer in (doctor, patient):
        await peer.wait_for_event("resumed", timeout=10)
    await _assert_media_went_on(doctor, patient, tracks)
    after = await RoomState(redis).snapshot(room)
    for key in ("routerId", "nodeId"):
        assert after[key] == before[key]
    # Same transports, producers and consumers: nothing was re-created.
    assert {p["peerId"]: p["transports"] for p in after["peers"]} == {
        p["peerId"]: p["transports"] for p in before["peers"]
    }
    await _signaling_works(doctor, patient)


async def test_control_plane_kill_and_restart_resumes_without_a_media_gap(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    server = instance()
    room = new_room_id()
    doctor, patient = await _pair(stack, peers, server.url, room)
    old_instance = (await RoomState(redis).get_participant(room, "dr-res")).instance
    tracks = _watch_video(doctor, patient)

    # Off the event loop: the peers in this process keep decoding meanwhile.
    await asyncio.to_thread(server.kill)
    await asyncio.sleep(1.0)  # media keeps flowing with no control plane at all
    await asyncio.to_thread(server.start)

    for peer in (doctor, patient):
        await peer.wait_for_event("resumed", timeout=20)
    await _assert_media_went_on(doctor, patient, tracks)
    record = await RoomState(redis).get_participant(room, "dr-res")
    assert record.instance != old_instance and record.sid and record.epoch == 2
    await _signaling_works(doctor, patient)


async def test_sigterm_drains_and_clients_resume_on_the_restarted_instance(
    stack: Stack, instance, peers: list[MediaPeer]
) -> None:
    server = instance()
    room = new_room_id()
    doctor, patient = await _pair(stack, peers, server.url, room)
    tracks = _watch_video(doctor, patient)

    await asyncio.to_thread(server.process.stop)  # SIGTERM: drain
    assert "signaling_drained" in server.process.log_path.read_text()
    await asyncio.to_thread(server.start)

    for peer in (doctor, patient):
        await peer.wait_for_event("resumed", timeout=20)
    await _assert_media_went_on(doctor, patient, tracks)
    await _signaling_works(doctor, patient)


async def test_a_participant_that_does_not_come_back_leaves_after_the_window(
    stack: Stack, instance, peers: list[MediaPeer], redis, rpc: SfuClient
) -> None:
    server = instance(TELEMED_RESUME_WINDOW="2")
    room = new_room_id()
    before = (await rpc.request("getInfo"))["transports"]
    doctor, patient = await _pair(stack, peers, server.url, room, auto_resume=False)
    credential = patient.resume_token

    cut_socket_of(patient)  # the link drops; no leave, and this client does not resume
    reconnecting = await doctor.wait_for_event("peerReconnecting", timeout=5)
    assert reconnecting["peerId"] == "pt-res" and reconnecting["resumeWindow"] == 2
    left = await doctor.wait_for_event("peerLeft", timeout=10)
    assert left == {"peerId": "pt-res", "reason": "timeout"}
    assert await RoomState(redis).participant_ids(room) == ["dr-res"]
    # The patient's two transports are closed on the SFU; the doctor's remain.
    assert (await rpc.request("getInfo"))["transports"] == before + 2

    late = MediaPeer(server.url, stack.token(room, "pt-res", "patient"), auto_resume=False)
    peers.append(late)
    await late.connect()
    with pytest.raises(SignalingError) as refused:
        await late.request("resume", {"consultationId": room, "resumeToken": credential})
    assert refused.value.code == "RESUME_EXPIRED"


async def test_resume_needs_the_current_credential_of_the_same_participant(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    server = instance()
    room = new_room_id()
    _doctor, patient = await _pair(stack, peers, server.url, room)
    first = patient.resume_token
    server.cut_client_sockets()
    await patient.wait_for_event("resumed", timeout=10)
    assert patient.resume_token != first  # rotated

    async def attempt(participant: str, role: str, credential: str) -> str:
        other = MediaPeer(server.url, stack.token(room, participant, role), auto_resume=False)
        peers.append(other)
        await other.connect()
        with pytest.raises(SignalingError) as refused:
            await other.request("resume", {"consultationId": room, "resumeToken": credential})
        return refused.value.code

    # The old credential, and the current one presented by someone else's token.
    assert await attempt("pt-res", "patient", first) == "FORBIDDEN"
    assert await attempt("dr-res", "physician", patient.resume_token) == "FORBIDDEN"
    assert await attempt("pt-res", "patient", "1.not-the-credential-at-all") == "FORBIDDEN"
    # Nothing changed for the real patient.
    record = await RoomState(redis).get_participant(room, "pt-res")
    assert record.sid and record.epoch == 2
    await patient.wait_for_frames(
        "dr-res", "video", count=patient.tracks_from("dr-res")[0].frames + 5
    )


async def test_participants_of_a_dead_instance_are_removed_after_the_window(
    stack: Stack, instance, peers: list[MediaPeer], redis
) -> None:
    survivor = instance(TELEMED_RESUME_WINDOW="2")
    doomed = instance(TELEMED_RESUME_WINDOW="2")
    room = new_room_id()
    doctor = MediaPeer(survivor.url, stack.token(room, "dr-res", "physician"))
    patient = MediaPeer(doomed.url, stack.token(room, "pt-res", "patient"), auto_resume=False)
    peers.extend([doctor, patient])
    for peer in (doctor, patient):
        await peer.connect()
        await peer.join(room)

    await asyncio.to_thread(doomed.kill)  # no drain, no clean-up: its heartbeat stops

    reconnecting = await doctor.wait_for_event("peerReconnecting", timeout=20)
    assert reconnecting == {"peerId": "pt-res", "reason": "server_lost", "resumeWindow": 2.0}
    left = await doctor.wait_for_event("peerLeft", timeout=10)
    assert left["reason"] == "timeout"
    assert await RoomState(redis).participant_ids(room) == ["dr-res"]


async def test_a_consumer_resume_lost_with_the_connection_is_sent_again_after_the_resume(
    stack: Stack, instance, peers: list[MediaPeer]
) -> None:
    """The patient starts sending as the doctor's socket is cut (ss -K) just when
    its resumeConsumer goes out: no answer, and the server keeps that consumer
    paused.  After the resume the client sends it again for the consumers the
    server lists paused, and the doctor decodes the patient's audio and video."""
    server = instance()
    room = new_room_id()
    doctor = MediaPeer(server.url, stack.token(room, "dr-lost", "physician"), request_timeout=3)
    patient = MediaPeer(server.url, stack.token(room, "pt-lost", "patient"))
    peers.extend([doctor, patient])
    await doctor.connect()
    await doctor.join(room)
    await doctor.start_sending()
    await doctor.start_receiving()

    sent = doctor.request
    lost: list[str] = []

    async def cut_at_the_first_resume(event: str, payload: Any = None) -> dict[str, Any]:
        if event == "resumeConsumer" and not lost:
            lost.append(payload["consumerId"])
            cut_socket_of(doctor)
        return await sent(event, payload)

    doctor.request = cut_at_the_first_resume  # type: ignore[method-assign]
    await patient.connect()
    await patient.join(room)
    await patient.start_sending()
    await doctor.wait_for_event("resumed", timeout=15)
    assert lost and lost[0] in doctor.consumers
    await doctor.wait_for_frames("pt-lost", "audio", count=10, timeout=15)
    await doctor.wait_for_frames("pt-lost", "video", count=10, timeout=15)
    assert not doctor.unresumed
