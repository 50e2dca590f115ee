"""Redis or PostgreSQL away: calls in progress keep their media, new joins get
SERVICE_UNAVAILABLE quickly (not a hang, not INTERNAL_ERROR), and everything
works again once the backend is back.  The outages are real: Redis is stopped
with SIGSTOP for 10 s, or killed and replaced by an empty one; PostgreSQL
connections are refused at its port (nftables on loopback) and the open ones
cut (ss -K)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from controlplane.devstack import services as ls
from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


@dataclass
class OwnRedis:
    """A Redis, SFU node and control plane of their own: this Redis can be stopped."""

    stack: Stack
    redis: ls.ManagedProcess
    sfu: ls.ManagedProcess
    control: ls.ManagedProcess


@pytest.fixture(scope="module")
def own(stack: Stack) -> Iterator[OwnRedis]:
    redis = ls.start_redis(stack.data_dir / "redis-outage")
    sfu = ls.start_sfu_node(
        stack.data_dir,
        redis_url=redis.url,
        secret=stack.sfu_secret,
        node_id=f"sfu-outage-{secrets.token_hex(2)}",
        rtc_min_port=47000,
        rtc_max_port=47999,
        num_workers=1,
    )
    control = ls.start_control_plane(stack.data_dir, stack.control_plane_env(REDIS_URL=redis.url))
    try:
        yield OwnRedis(stack, redis, sfu, control)
    finally:
        for process in (control, sfu, redis):
            process.stop()


async def _call(own: OwnRedis, peers: list[MediaPeer], room: str) -> tuple[MediaPeer, MediaPeer]:
    doctor = MediaPeer(own.control.url, own.stack.token(room, "dr-out", "physician"))
    patient = MediaPeer(own.control.url, own.stack.token(room, "pt-out", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await patient.wait_for_frames("dr-out", "video", count=10)
    await doctor.wait_for_frames("pt-out", "video", count=10)
    return doctor, patient


async def _late_peer(own: OwnRedis, peers: list[MediaPeer], room: str) -> MediaPeer:
    """Connected, not joined; its token (and the session it names) made beforehand."""
    peer = MediaPeer(own.control.url, own.stack.token(room, "pt-late", "patient"))
    peers.append(peer)
    await peer.connect()
    return peer


async def _call_goes_on(
    own: OwnRedis,
    peers: list[MediaPeer],
    room: str,
    doctor: MediaPeer,
    patient: MediaPeer,
    newcomer: str,
) -> None:
    """The call's signaling works (a pause reaches the other side), a new
    participant joins the same room and decodes it, and nobody was dropped."""
    camera = doctor.producers["camera"].id
    await doctor.request("pauseProducer", {"producerId": camera})
    await patient.wait_for_event("producerPaused", lambda d: d["producerId"] == camera)
    await doctor.request("resumeProducer", {"producerId": camera})
    late = MediaPeer(own.control.url, own.stack.token(room, newcomer, "patient"))
    peers.append(late)
    await late.connect()
    await late.join(room)
    await late.start_receiving()
    await late.wait_for_frames("dr-out", "video", count=10)
    assert [e for e in patient.events if e.name in ("peerLeft", "roomClosed")] == []


async def _join_refused(peer: MediaPeer, room: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(SignalingError) as refused:
        await peer.join(room)
    return refused.value.code, time.monotonic() - started


async def test_a_10s_redis_outage_keeps_calls_and_refuses_joins_clearly(
    own: OwnRedis, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    doctor, patient = await _call(own, peers, room)
    tracks = [patient.tracks_from("dr-out", "video")[0], doctor.tracks_from("pt-out", "video")[0]]
    for track in tracks:
        track.max_gap = 0.0

    other_room = new_room_id()
    late = await _late_peer(own, peers, other_room)
    os.kill(own.redis.proc.pid, signal.SIGSTOP)
    try:
        code, seconds = await _join_refused(late, other_room)
        assert code == "SERVICE_UNAVAILABLE"
        assert seconds < 2.0, f"refused after {seconds:.2f} s"
        # A cheap event of someone in the call is answered from the instance's memory.
        caps = await doctor.request("getRouterRtpCapabilities")
        assert caps["routerRtpCapabilities"] == doctor.join_info["routerRtpCapabilities"]
        await asyncio.sleep(max(0.0, 10.0 - seconds))
    finally:
        os.kill(own.redis.proc.pid, signal.SIGCONT)

    gaps = [round(t.max_gap, 3) for t in tracks]
    assert max(gaps) < 0.5, f"video gaps during the outage: {gaps}"
    await _call_goes_on(own, peers, room, doctor, patient, "pt-late2")


def _postgres_down(port: int) -> None:
    """New connections to PostgreSQL are refused and the open ones are cut."""
    rules = (
        f"table inet {NFT_TABLE} {{\n  chain output {{\n"
        f"    type filter hook output priority 0;\n"
        f"    tcp dport {port} reject with tcp reset\n  }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
    subprocess.run(["ss", "-K", "dport", "=", f":{port}"], check=True, capture_output=True)


def _postgres_up() -> None:
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)


NFT_TABLE = "telemed_pgdown"


async def test_postgres_down_refuses_joins_and_keeps_calls(
    own: OwnRedis, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    _doctor, patient = await _call(own, peers, room)
    video = patient.tracks_from("dr-out", "video")[0]
    video.max_gap = 0.0
    port = urlparse(own.stack.database_url).port
    assert port is not None

    late = await _late_peer(own, peers, room)
    _postgres_down(port)
    try:
        code, seconds = await _join_refused(late, room)
        # No audit entry can be written, and an unaudited join is not allowed.
        assert code == "SERVICE_UNAVAILABLE"
        assert seconds < 3.0, f"refused after {seconds:.2f} s"
        frames = video.frames
        await asyncio.sleep(2.0)
        assert video.frames > frames + 30 and video.max_gap < 0.5
    finally:
        _postgres_up()

    late = MediaPeer(own.control.url, own.stack.token(room, "pt-late3", "patient"))
    peers.append(late)
    await late.connect()
    await late.join(room)
    await late.start_receiving()
    await late.wait_for_frames("dr-out", "video", count=10)


async def test_a_join_whose_audit_entry_is_refused_is_undone(
    own: OwnRedis, peers: list[MediaPeer]
) -> None:
    """The join's audit entry is committed while its room is prepared; when
    PostgreSQL refuses that entry (a real constraint violation, after the session
    was read), the join is answered SERVICE_UNAVAILABLE, undone in Redis, nobody
    hears of it, and the call in progress goes on."""
    room = new_room_id()
    doctor, patient = await _call(own, peers, room)
    video = patient.tracks_from("dr-out", "video")[0]
    late = MediaPeer(own.control.url, own.stack.token(room, "pt-noaudit", "patient"))
    peers.append(late)
    await late.connect()
    constraint = f"refuse_{room.replace('-', '_')}"
    own.stack.psql(
        f"ALTER TABLE audit_log ADD CONSTRAINT {constraint} CHECK "
        "(action <> 'room.join' OR actor_id IS DISTINCT FROM 'pt-noaudit') NOT VALID"
    )
    try:
        code, _seconds = await _join_refused(late, room)
        assert code == "SERVICE_UNAVAILABLE"
        client = aioredis.from_url(own.redis.url, decode_responses=True)
        try:
            members = await client.smembers(f"telemed:room:{{{room}}}:peers")
        finally:
            await client.aclose()
        assert sorted(members) == ["dr-out", "pt-out"]
        frames = video.frames
        await asyncio.sleep(1.0)
        assert video.frames > frames + 15
    finally:
        own.stack.psql(f"ALTER TABLE audit_log DROP CONSTRAINT {constraint}")
    assert not [
        e
        for e in doctor.events
        if isinstance(e.data, dict) and e.data.get("peerId") == "pt-noaudit"
    ]
    joins = "SELECT count(*) FROM audit_log WHERE action = 'room.join' AND actor_id = 'pt-noaudit'"
    assert own.stack.psql(joins) == "0"

    # Asked again, the same connection joins: nothing of the refused join is in the way.
    joined = await late.join(room)
    assert sorted(p["peerId"] for p in joined["peers"]) == ["dr-out", "pt-out"]
    await doctor.wait_for_event("peerJoined", lambda d: d["peerId"] == "pt-noaudit")
    await late.start_receiving()
    await late.wait_for_frames("dr-out", "video", count=10)
    assert own.stack.psql(joins) == "1"


async def test_redis_restarted_without_its_data_keeps_the_call_and_its_room(
    own: OwnRedis, peers: list[MediaPeer]
) -> None:
    """Redis keeps live state in memory only: kill -9 and a new, empty Redis on the
    same port.  The media never stops; the instance puts the room back from what it
    holds, so signaling goes on in the same room and a newcomer joins that room."""
    room = new_room_id()
    doctor, patient = await _call(own, peers, room)
    tracks = [patient.tracks_from("dr-out", "video")[0], doctor.tracks_from("pt-out", "video")[0]]
    for track in tracks:
        track.max_gap = 0.0
    client = aioredis.from_url(own.redis.url, decode_responses=True)
    before = await RoomState(client).snapshot(room)
    await client.set("telemed:test:marker", "1")
    await client.aclose()
    assert before is not None
    port = urlparse(own.redis.url).port
    own.redis.proc.kill()
    own.redis.proc.wait(5)
    own.redis = await asyncio.to_thread(ls.start_redis, own.stack.data_dir / "redis-outage", port)
    client = aioredis.from_url(own.redis.url, decode_responses=True)
    try:
        # Really empty (the room itself may be back already).
        assert await client.exists("telemed:test:marker") == 0
        for _ in range(50):
            after = await RoomState(client).snapshot(room)
            # Put back participant by participant: wait for the whole of it.
            if after == before:
                break
            await asyncio.sleep(0.1)
        assert after == before, "the room was not put back as it was"
    finally:
        await client.aclose()

    await asyncio.sleep(1.0)
    gaps = [round(t.max_gap, 3) for t in tracks]
    assert max(gaps) < 0.5, f"video gaps across the Redis restart: {gaps}"
    await _call_goes_on(own, peers, room, doctor, patient, "pt-late4")
