"""The SFU being down or dying: a clear error on join instead of a hang, and
peers told (not left silent) when their room's media server fails."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import pytest

from controlplane.devstack import services as ls
from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import children_named, cut_connections_to
from tests.integration.api_client import Api
from tests.integration.test_consultation_media import _start_pair
from tests.integration.test_recording_capture import decode_errors, probe
from tests.integration.test_room_lifecycle import _room_keys as room_keys

pytestmark = pytest.mark.integration


@dataclass
class IsolatedStack:
    """A Redis and a control plane of their own, so SFU nodes can be killed freely."""

    stack: Stack
    redis: ls.ManagedProcess
    control: ls.ManagedProcess


@pytest.fixture(scope="module")
def isolated(stack: Stack) -> Iterator[IsolatedStack]:
    redis = ls.start_redis(stack.data_dir / "redis-isolated")
    env = stack.control_plane_env(REDIS_URL=redis.url)
    control = ls.start_control_plane(stack.data_dir, env)
    try:
        yield IsolatedStack(stack, redis, control)
    finally:
        control.stop()
        redis.stop()


def _start_node(iso: IsolatedStack, node_id: str) -> ls.ManagedProcess:
    return ls.start_sfu_node(
        iso.stack.data_dir,
        redis_url=iso.redis.url,
        secret=iso.stack.sfu_secret,
        node_id=node_id,
        rtc_min_port=46000,
        rtc_max_port=46999,
        num_workers=1,
    )


async def _isolated_call(
    iso: IsolatedStack, peers: list[MediaPeer], doctor_id: str, patient_id: str
) -> tuple[str, MediaPeer, MediaPeer]:
    """A 1:1 call on the isolated control plane, media flowing both ways."""
    room = new_room_id()
    doctor = MediaPeer(iso.control.url, iso.stack.token(room, doctor_id, "physician"))
    patient = MediaPeer(iso.control.url, iso.stack.token(room, patient_id, "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    return room, doctor, patient


async def _join_error(url: str, stack: Stack, peers: list[MediaPeer]) -> tuple[str, float]:
    room = new_room_id()
    peer = MediaPeer(url, stack.token(room, "pt-wait", "patient"))
    peers.append(peer)
    await peer.connect()
    started = time.monotonic()
    with pytest.raises(SignalingError) as refused:
        await peer.join(room)
    return refused.value.code, time.monotonic() - started


async def test_join_without_any_sfu_node_gives_sfu_unavailable(
    isolated: IsolatedStack, peers: list[MediaPeer]
) -> None:
    code, elapsed = await _join_error(isolated.control.url, isolated.stack, peers)
    assert code == "SFU_UNAVAILABLE"
    # Answered, not left to the client's 10 s request timeout.
    assert elapsed < peers[0].request_timeout


async def test_join_with_a_killed_but_still_registered_node_gives_sfu_unavailable(
    isolated: IsolatedStack, peers: list[MediaPeer]
) -> None:
    node = _start_node(isolated, f"sfu-killed-{secrets.token_hex(2)}")
    os.kill(node.proc.pid, signal.SIGKILL)  # no chance to deregister
    node.proc.wait(5)
    code, elapsed = await _join_error(isolated.control.url, isolated.stack, peers)
    assert code == "SFU_UNAVAILABLE"
    assert elapsed < peers[0].request_timeout


async def test_sfu_node_dying_mid_call_tells_peers_and_clears_the_room(
    isolated: IsolatedStack, peers: list[MediaPeer]
) -> None:
    import redis.asyncio as aioredis

    node = _start_node(isolated, f"sfu-dies-{secrets.token_hex(2)}")
    try:
        room, doctor, patient = await _isolated_call(isolated, peers, "dr-x", "pt-x")
        await patient.wait_for_frames("dr-x", "video", count=5)

        os.kill(node.proc.pid, signal.SIGKILL)
        for peer in (doctor, patient):
            closed = await peer.wait_for_event("roomClosed", timeout=10)
            assert closed["reason"] == "media_server_failure"
            assert closed["rejoin"] is True
        client = aioredis.from_url(isolated.redis.url, decode_responses=True)
        try:
            assert await RoomState(client).get_room(room) is None
            assert await room_keys(client, room) == []
        finally:
            await client.aclose()
    finally:
        node.stop()


def _alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def _record(iso: IsolatedStack, room: str, http: aiohttp.ClientSession) -> tuple[str, str]:
    """Start recording the room's session on the isolated control plane (the
    patient's recording consent granted first): (recording id, coordinator token)."""
    stack = iso.stack
    session_id = stack.psql(f"SELECT id FROM sessions WHERE room_id = '{room}'")
    api = Api(stack, http)
    coordinator = api.token("coord-rec-node", "coordinator")
    version = await api.consent_version("recording")
    granted = await api.call(
        "POST",
        "consent",
        coordinator,
        {"patientId": "seed-pt", "purpose": "recording", "version": version},
    )
    assert granted.status == 201, granted.body
    async with http.post(
        f"{iso.control.url}/api/telemedicine/recording/start",
        json={"sessionId": session_id},
        headers={"Authorization": f"Bearer {coordinator}"},
    ) as response:
        started = await response.json()
        assert response.status == 200, started
    return started["recordingId"], coordinator


async def test_a_recording_on_a_node_that_dies_is_failed_told_and_alerted(
    isolated: IsolatedStack, peers: list[MediaPeer]
) -> None:
    """kill -9 of the SFU node while a consultation records: the recording does not
    stay 'recording' forever; it is failed (audited) and the room is told; and the
    node's ffmpeg and age die with it (left over, they held the recording ports
    and the next node's recordings failed)."""
    node = _start_node(isolated, f"sfu-rec-{secrets.token_hex(2)}")
    try:
        room, doctor, _ = await _isolated_call(isolated, peers, "dr-rec-die", "pt-rec-die")
        stack = isolated.stack
        async with aiohttp.ClientSession() as http:
            recording_id, _ = await _record(isolated, room, http)
        await doctor.wait_for_event("recordingStarted", lambda d: d["recordingId"] == recording_id)
        recorder = children_named(node.proc.pid, "ffmpeg") | children_named(node.proc.pid, "age")
        assert len(recorder) == 2

        os.kill(node.proc.pid, signal.SIGKILL)
        stopped = await doctor.wait_for_event(
            "recordingStopped", lambda d: d["recordingId"] == recording_id, timeout=10
        )
        assert stopped["reason"] == "failed"
        for _ in range(30):
            if not _alive(recorder):
                break
            await asyncio.sleep(0.1)
        assert not _alive(recorder)
        row = stack.psql(
            f"SELECT status || ',' || failure FROM recordings WHERE id = '{recording_id}'"
        )
        assert row == "failed,the SFU node was lost"
        audited = stack.psql(
            "SELECT count(*) FROM audit_log WHERE action = 'recording.failed' "
            f"AND resource_id = '{recording_id}'"
        )
        assert audited == "1"
    finally:
        node.stop()


async def test_a_node_stopped_gracefully_completes_its_recordings(
    isolated: IsolatedStack, peers: list[MediaPeer], tmp_path: Path
) -> None:
    """SIGTERM to the SFU node while a consultation records (a deploy, a reboot):
    the node completes the file and says so; the recording is 'completed', not
    'failed', the room hears why it stopped, and the file downloads and decodes."""
    node = _start_node(isolated, f"sfu-rec-term-{secrets.token_hex(2)}")
    try:
        room, doctor, _ = await _isolated_call(isolated, peers, "dr-rec-term", "pt-rec-term")
        stack = isolated.stack
        async with aiohttp.ClientSession() as http:
            recording_id, coordinator = await _record(isolated, room, http)
            await doctor.wait_for_event(
                "recordingStarted", lambda d: d["recordingId"] == recording_id
            )
            await asyncio.sleep(3)
            node.proc.send_signal(signal.SIGTERM)
            stopped = await doctor.wait_for_event(
                "recordingStopped", lambda d: d["recordingId"] == recording_id, timeout=15
            )
            assert stopped["reason"] == "node_shutdown"
            row = stack.psql(
                "SELECT status || ',' || stop_reason || ',' || coalesce(failure, '-') "
                f"FROM recordings WHERE id = '{recording_id}'"
            )
            assert row == "completed,node_shutdown,-"
            async with http.get(
                f"{isolated.control.url}/api/telemedicine/recording/{recording_id}/media",
                headers={"Authorization": f"Bearer {coordinator}"},
            ) as response:
                assert response.status == 200
                media = await response.read()
        path = tmp_path / "call.mkv"
        path.write_bytes(media)
        assert decode_errors(path) == (0, "")
        info = probe(path)
        assert sorted(s["codec_type"] for s in info["streams"]) == [
            "audio",
            "audio",
            "video",
            "video",
        ]
        assert info["duration"] >= 2.0
    finally:
        node.stop()


async def test_mediasoup_worker_death_tells_peers_and_rejoin_restores_media(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=5)

    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        before = (await client.request("getWorkerResourceUsage"))["workers"]
        old_room = await RoomState(redis).get_room(room)
        assert old_room is not None and old_room.workerPid in [w["pid"] for w in before]
        os.kill(old_room.workerPid, signal.SIGKILL)  # the worker that holds this room
        for peer in (doctor, patient):
            closed = await peer.wait_for_event("roomClosed", timeout=10)
            assert closed["reason"] == "media_server_failure"
        # Before the clients were told, the room was made again on the live worker.
        moved = await RoomState(redis).get_room(room)
        assert moved is not None and moved.routerId != old_room.routerId
        live_pids = [w["pid"] for w in before if w["pid"] != old_room.workerPid]
        assert moved.workerPid in live_pids

        # The node replaces the dead worker, keeping its capacity.
        for _ in range(50):
            after = (await client.request("getWorkerResourceUsage"))["workers"]
            if len([w for w in after if w["alive"]]) == len(before):
                break
            await asyncio.sleep(0.1)
        assert len([w for w in after if w["alive"]]) == len(before)
        assert sum(w["respawns"] for w in after) >= 1
    finally:
        await client.close()

    # The clients rejoin at once by themselves (the Python client does what the
    # event says) and media flows again in a new room.
    for peer, sender in ((doctor, "pt-joao"), (patient, "dr-ana")):
        rejoined = await peer.wait_for_event("rejoined", timeout=10)
        assert rejoined["roomId"] == room
        for _ in range(100):
            fresh = [t for t in peer.tracks_from(sender, "video") if not t.ended and t.frames >= 5]
            if fresh:
                break
            await asyncio.sleep(0.1)
        assert fresh, f"no video from {sender} after the rejoin"
    # They joined the room made for them, not yet another one.
    assert (await RoomState(redis).get_room(room)) == moved


async def test_a_cut_rpc_link_is_reconnected_and_the_call_goes_on(
    isolated: IsolatedStack, peers: list[MediaPeer]
) -> None:
    node = _start_node(isolated, f"sfu-blip-{secrets.token_hex(2)}")
    try:
        _room, doctor, patient = await _isolated_call(isolated, peers, "dr-b", "pt-b")
        video = await patient.wait_for_frames("dr-b", "video", count=10)
        video.max_gap = 0.0
        frames = video.frames

        # Cut the control plane's RPC connection to the node (the node stays up).
        port = urlparse(node.url).port
        cut_connections_to(port)
        await asyncio.sleep(2.0)

        for peer in (doctor, patient):
            assert [e.name for e in peer.events if e.name == "roomClosed"] == []
        assert video.frames > frames + 30 and video.max_gap < 0.5, (video.frames, video.max_gap)
        # Later signaling reaches the node again.
        camera = doctor.producers["camera"].id
        await doctor.request("pauseProducer", {"producerId": camera})
        await patient.wait_for_event("producerPaused", lambda d: d["producerId"] == camera)
        assert "sfu_link_restored" in isolated.control.log_path.read_text()
    finally:
        node.stop()
