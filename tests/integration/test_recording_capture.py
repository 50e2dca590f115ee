"""Server-side capture (issue 12, first part): the SFU node records a live call's
producers through PlainTransports into ffmpeg (stream copy, Matroska), encrypted
by age as it is written.  Checked on the decrypted file: one stream per producer,
its duration, every stream decodes, the video frames are there, the tone is heard;
and on the ciphertext: age format, no plaintext bytes."""

from __future__ import annotations

import array
import asyncio
import hashlib
import itertools
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pyrage
import pytest
from pyrage import x25519

from controlplane.clinical.recording_media import joined
from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient, SfuRequestError
from telemed_client import MediaPeer, share_screen
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import children_named, udp_dropped_on_loopback

pytestmark = pytest.mark.integration

EBML_MAGIC = bytes.fromhex("1a45dfa3")  # the first bytes of any Matroska file


@pytest.fixture
async def rpc(stack: Stack) -> AsyncIterator[SfuClient]:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=20)
    yield client
    await client.close()


def probe(path: Path) -> dict:
    """Streams, and the duration read from the packets (a file written to a pipe,
    as the recorder writes it, has no duration in its header)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_packets", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    info["duration"] = max(
        float(p["pts_time"]) + float(p.get("duration_time") or 0) for p in info["packets"]
    )
    return info


def decoded_frames(path: Path, stream: int) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams[stream]))


def tone_level(path: Path, stream: int, frequency: float) -> float:
    """Share of one second of decoded audio's energy at ``frequency`` (Goertzel)."""
    with av.open(str(path)) as container:
        audio = container.streams[stream]
        rate = audio.codec_context.sample_rate
        samples: list[float] = []
        for frame in container.decode(audio):
            fmt = frame.format
            values = array.array("f" if fmt.name.startswith("flt") else "h")
            values.frombytes(bytes(frame.planes[0]))
            step = 1 if fmt.is_planar else len(frame.layout.channels)
            samples.extend(values[: frame.samples * step : step])
            if len(samples) >= 3 * rate:
                break
    window = samples[2 * rate : 3 * rate]  # the third second: past any start-up
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in window:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in window) * len(window) / 2
    return power / energy if energy else 0.0


def decode_errors(path: Path) -> tuple[int, str]:
    """Decode every stream; ffmpeg's exit code and error output.  The null output
    keeps the file's own (millisecond) time base: by default it re-times video at
    1/frame-rate, and two frames 33 and 34 ms apart can then land on one tick, a
    complaint about the check's output, not about the file."""
    decode_all = ["-map", "0", "-enc_time_base", "-1", "-f", "null", "-"]
    check = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), *decode_all],
        capture_output=True,
        text=True,
        check=False,
    )
    return check.returncode, check.stderr.strip()


def analyse(ciphertext: bytes, identity: x25519.Identity, folder: Path) -> dict:
    plain = folder / "call.mkv"
    plain.write_bytes(pyrage.decrypt(ciphertext, [identity]))
    info = probe(plain)
    for stream in info["streams"]:
        if stream["codec_type"] == "video":
            stream["decoded"] = decoded_frames(plain, stream["index"])
        else:
            stream["tone"] = tone_level(plain, stream["index"], 400)
            stream["off_tone"] = tone_level(plain, stream["index"], 1000)
    return {
        "magic": plain.read_bytes()[:4],
        "info": info,
        "decode_errors": decode_errors(plain),
    }


async def analysed_segment(result: dict, identity: x25519.Identity, folder: Path) -> dict:
    """``analyse`` of a recording that has one segment (no producer joined it)."""
    [segment] = result["segments"]
    ciphertext = await asyncio.to_thread(Path(segment["file"]).read_bytes)
    return await asyncio.to_thread(analyse, ciphertext, identity, folder)


async def live_call(
    stack: Stack, peers: list[MediaPeer], redis, doctor_id: str, patient_id: str
) -> tuple[str, MediaPeer, MediaPeer, dict, list[str]]:
    """A 1:1 call sending both ways: room, doctor, patient, room snapshot, producer ids."""
    room = new_room_id()
    doctor = MediaPeer(stack.url, stack.token(room, doctor_id, "physician"))
    patient = MediaPeer(stack.url, stack.token(room, patient_id, "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await patient.wait_for_frames(doctor_id, "video", count=5)
    snapshot = await RoomState(redis).snapshot(room)
    assert snapshot is not None
    producers = [p["producerId"] for peer in snapshot["peers"] for p in peer["producers"]]
    return room, doctor, patient, snapshot, producers


def start_params(
    snapshot: dict, producers: list[str], identity: x25519.Identity, recording_id: str
) -> dict:
    return {
        "routerId": snapshot["routerId"],
        "recordingId": recording_id,
        "producerIds": producers,
        "recipient": str(identity.to_public()),
    }


async def start_recording(
    rpc: SfuClient, snapshot: dict, producers: list[str], name: str
) -> tuple[x25519.Identity, str, float]:
    """Record the call through the node's RPC: (identity, recording id, start time)."""
    identity = x25519.Identity.generate()
    recording_id = f"{name}-{snapshot['roomId']}"
    started = time.monotonic()
    await rpc.request("startRecording", start_params(snapshot, producers, identity, recording_id))
    return identity, recording_id, started


async def test_a_call_is_recorded_encrypted_and_decodes_completely(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    room, doctor, _, snapshot, producers = await live_call(stack, peers, redis, "dr-rec", "pt-rec")
    await doctor.wait_for_frames("pt-rec", "video", count=5)
    assert len(producers) == 4
    identity = x25519.Identity.generate()
    recording_id = f"rec-{room}"
    started = time.monotonic()
    params = start_params(snapshot, producers, identity, recording_id)
    answer = await rpc.request("startRecording", params)
    assert sorted(s["kind"] for s in answer["streams"]) == ["audio", "audio", "video", "video"]
    with pytest.raises(SfuRequestError) as twice:
        await rpc.request("startRecording", params)
    assert twice.value.error_type == "CONFLICT"
    await asyncio.sleep(10)
    result = await rpc.request("stopRecording", {"recordingId": recording_id})
    wall = time.monotonic() - started

    [segment] = result["segments"]
    ciphertext = await asyncio.to_thread(Path(segment["file"]).read_bytes)
    assert len(ciphertext) == segment["bytes"] == result["bytes"] > 100_000
    assert ciphertext.startswith(b"age-encryption.org/v1")
    assert EBML_MAGIC not in ciphertext
    assert hashlib.sha256(ciphertext).hexdigest() == segment["sha256"]
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(ciphertext, [x25519.Identity.generate()])

    found = await asyncio.to_thread(analyse, ciphertext, identity, tmp_path)
    assert found["magic"] == EBML_MAGIC
    assert found["decode_errors"] == (0, "")
    streams = found["info"]["streams"]
    assert sorted(s["codec_type"] for s in streams) == ["audio", "audio", "video", "video"]
    duration = found["info"]["duration"]
    assert abs(duration - wall) <= 1.0, (duration, wall)
    for stream in streams:
        if stream["codec_type"] == "video":
            assert stream["decoded"] >= 0.9 * 30 * duration, (stream["decoded"], duration)
        else:
            assert stream["tone"] > 0.5 and stream["off_tone"] < 0.01, stream


async def test_an_ffmpeg_that_dies_is_reported_and_its_ports_come_back(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    failures: list[dict] = []

    async def heard(_node: str, event: str, data: dict) -> None:
        if event == "recording.failed":
            failures.append(data)

    rpc = SfuClient(
        "sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=20, on_notification=heard
    )
    try:
        room, _, _, snapshot, producers = await live_call(stack, peers, redis, "dr-rec2", "pt-rec2")
        identity = x25519.Identity.generate()
        before = children_named(stack.sfu.proc.pid, "ffmpeg")
        await rpc.request(
            "startRecording", start_params(snapshot, producers, identity, f"dies-{room}")
        )
        (ffmpeg,) = children_named(stack.sfu.proc.pid, "ffmpeg") - before
        os.kill(ffmpeg, signal.SIGKILL)
        for _ in range(50):
            if failures:
                break
            await asyncio.sleep(0.1)
        assert failures and failures[0]["recordingId"] == f"dies-{room}", failures
        assert "ffmpeg" in failures[0]["reason"]
        with pytest.raises(SfuRequestError) as gone:
            await rpc.request("stopRecording", {"recordingId": f"dies-{room}"})
        assert gone.value.error_type == "NOT_FOUND"
        # Its ports and consumers were released: the same call records again.
        again = await rpc.request(
            "startRecording", start_params(snapshot, producers, identity, f"again-{room}")
        )
        assert len(again["streams"]) == 4
        await asyncio.sleep(2)  # ffmpeg writes its header once it has seen every stream
        stopped = await rpc.request("stopRecording", {"recordingId": f"again-{room}"})
        assert stopped["bytes"] > 0
    finally:
        await rpc.close()


async def test_camera_off_and_on_during_a_recording_keeps_it_decodable_and_complete(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """The physician turns the camera off for 2 s mid-recording: the file still
    decodes without errors, and that stream has its frames before and after
    (a key frame was requested when the producer resumed)."""
    _, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-cam-rec", "pt-cam-rec"
    )
    [camera] = [
        p["producerId"]
        for peer in snapshot["peers"]
        if peer["peerId"] == "dr-cam-rec"
        for p in peer["producers"]
        if p["source"] == "camera"
    ]
    identity, recording_id, started = await start_recording(rpc, snapshot, producers, "cam")
    await asyncio.sleep(3)
    await doctor.request("pauseProducer", {"producerId": camera})
    await asyncio.sleep(2)
    await doctor.request("resumeProducer", {"producerId": camera})
    await asyncio.sleep(3)
    result = await rpc.request("stopRecording", {"recordingId": recording_id})
    wall = time.monotonic() - started

    found = await analysed_segment(result, identity, tmp_path)
    assert found["decode_errors"] == (0, "")
    index = producers.index(camera)
    stream = found["info"]["streams"][index]
    assert stream["codec_type"] == "video"
    # About 6 of the 8 s carried the camera: at least 90% of those frames.
    assert stream["decoded"] >= 0.9 * 30 * (wall - 2 - 0.5), (stream["decoded"], wall)
    last = max(float(p["pts_time"]) for p in found["info"]["packets"] if p["stream_index"] == index)
    assert last >= found["info"]["duration"] - 1.0  # frames after the camera came back


def packet_times(info: dict, index: int) -> list[float]:
    return sorted(float(p["pts_time"]) for p in info["packets"] if p["stream_index"] == index)


async def test_a_screen_share_during_a_recording_is_joined_in_sync(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """The physician shares the screen 3 s into a recording: the node starts a
    second segment with it; joined, the file has the four tracks plus the screen,
    which starts where it was shared, and the camera runs across the join without
    a gap; every stream decodes."""
    _, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-share-rec", "pt-share-rec"
    )
    identity, recording_id, started = await start_recording(rpc, snapshot, producers, "share")
    await asyncio.sleep(3)
    shared_at = time.monotonic() - started
    screen = await share_screen(doctor)
    wanted = {"recordingId": recording_id, "producerIds": [*producers, screen]}
    # Asked again while the share has sent nothing yet (it is "waiting"), as the
    # control plane does.
    extended = await rpc.request("extendRecording", wanted)
    for _ in range(30):
        if extended["added"]:
            break
        assert extended["waiting"] == [screen]
        await asyncio.sleep(0.1)
        extended = await rpc.request("extendRecording", wanted)
    assert extended["added"] == [screen] and extended["segment"] == 1
    unchanged = await rpc.request("extendRecording", wanted)
    assert unchanged["added"] == [] and unchanged["segment"] == 1
    await asyncio.sleep(4)
    result = await rpc.request("stopRecording", {"recordingId": recording_id})
    wall = time.monotonic() - started

    assert [s["index"] for s in result["segments"]] == [0, 1]
    assert [len(s["streams"]) for s in result["segments"]] == [4, 5]
    media = await asyncio.to_thread(joined, result["segments"], identity)
    path = tmp_path / "joined.mkv"
    path.write_bytes(media)
    assert decode_errors(path) == (0, "")
    info = probe(path)
    kinds = sorted(s["codec_type"] for s in info["streams"])
    assert kinds == ["audio", "audio", "video", "video", "video"]
    assert abs(info["duration"] - wall) <= 1.0, (info["duration"], wall)
    screen_times = packet_times(info, 4)  # the new track comes last
    assert info["streams"][4]["width"] == 640
    assert shared_at - 0.3 <= screen_times[0] <= shared_at + 1.0, (screen_times[0], shared_at)
    assert decoded_frames(path, 4) >= 0.8 * 15 * (wall - shared_at - 1)
    camera = packet_times(info, producers.index(doctor.producers["camera"].id))
    steps = [b - a for a, b in itertools.pairwise(camera)]
    assert max(steps) < 0.2, max(steps)  # no gap where the segments meet
    assert camera[-1] >= info["duration"] - 0.5


async def test_a_network_gap_at_the_sender_leaves_the_recording_decodable(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """Every datagram to the SFU's media ports dropped for 5 s mid-recording (the
    senders' network gone): the file decodes without errors and the video comes
    back after the gap.  (Retransmission repairs most of the gap: the senders
    keep a few seconds of packets.  Without the recorder's key-frame requests on a
    stalled stream, the video did not come back at all in 2 of 4 runs.)"""
    _, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-gap-rec", "pt-gap-rec"
    )
    identity, recording_id, started = await start_recording(rpc, snapshot, producers, "gap")
    await asyncio.sleep(3)
    with udp_dropped_on_loopback("45000-45999"):
        await asyncio.sleep(5)
    await asyncio.sleep(4)
    result = await rpc.request("stopRecording", {"recordingId": recording_id})
    wall = time.monotonic() - started

    found = await analysed_segment(result, identity, tmp_path)
    assert found["decode_errors"] == (0, "")
    camera = producers.index(doctor.producers["camera"].id)
    times = packet_times(found["info"], camera)
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert gap >= 0.5, gap  # the gap was there
    assert times[-1] >= found["info"]["duration"] - 1.0  # and the video came back
    # About 3 s before and 4 s after the gap: at least 90% of those frames.
    assert found["info"]["streams"][camera]["decoded"] >= 0.9 * 30 * (wall - gap - 1)


async def test_a_camera_that_is_off_when_recording_starts_joins_when_it_comes_on(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """The physician's camera is off (producer paused) when the recording starts:
    the recording starts without it (ffmpeg could not write a header for a video
    it never saw) and takes it in, in a new segment, once it comes on."""
    room, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-off-rec", "pt-off-rec"
    )
    camera = doctor.producers["camera"].id
    await doctor.request("pauseProducer", {"producerId": camera})
    identity = x25519.Identity.generate()
    recording_id = f"off-{room}"
    started = time.monotonic()
    answer = await rpc.request(
        "startRecording", start_params(snapshot, producers, identity, recording_id)
    )
    assert camera not in [s["producerId"] for s in answer["streams"]]
    assert len(answer["streams"]) == 3
    await asyncio.sleep(3)
    await doctor.request("resumeProducer", {"producerId": camera})
    on_at = time.monotonic() - started
    extended = await rpc.request(
        "extendRecording", {"recordingId": recording_id, "producerIds": producers}
    )
    assert extended["added"] == [camera]
    await asyncio.sleep(4)
    result = await rpc.request("stopRecording", {"recordingId": recording_id})

    assert [len(s["streams"]) for s in result["segments"]] == [3, 4]
    path = tmp_path / "joined.mkv"
    path.write_bytes(await asyncio.to_thread(joined, result["segments"], identity))
    assert decode_errors(path) == (0, "")
    info = probe(path)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "audio", "video", "video"]
    times = packet_times(info, 3)  # the camera comes last: it joined last
    assert on_at - 0.3 <= times[0] <= on_at + 1.5, (times[0], on_at)
    assert decoded_frames(path, 3) >= 0.8 * 30 * 3
