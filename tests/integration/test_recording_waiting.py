"""A producer that is live but has sent nothing yet (a camera switched on whose
first frames have not reached the SFU; a page whose encoder is starved) while the
room records: ffmpeg cannot write a segment header for a video it never saw.  The
recording must go on without it and take it in once it sends, not fail (before,
the whole recording failed and every segment was deleted)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import MediaStreamTrack
from av import VideoFrame

from controlplane.clinical.recording_media import joined
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer, PatternVideoTrack, share_screen
from tests.conftest import Stack
from tests.fault_injection import children_named
from tests.integration.api_client import Api
from tests.integration.test_recording_capture import (
    decode_errors,
    live_call,
    packet_times,
    probe,
    start_recording,
)
from tests.integration.test_recordings_api import download
from tests.integration.test_recordings_api import live_call as api_call

pytestmark = pytest.mark.integration


class GatedVideoTrack(MediaStreamTrack):
    """A 640x480 pattern at 15 fps that yields nothing until ``gate`` is set."""

    kind = "video"

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self._gate = gate
        self._pattern = PatternVideoTrack(640, 480, fps=15)

    async def recv(self) -> VideoFrame:
        await self._gate.wait()
        return await self._pattern.recv()


async def stopped_whole(
    rpc: SfuClient, recording_id: str, identity: Any, started: float, folder: Path
) -> dict:
    """Stop the recording: two segments (4 streams, then 5 with the share), joined
    into a file that decodes cleanly and lasts the whole recording; its probe."""
    result = await rpc.request("stopRecording", {"recordingId": recording_id})
    wall = time.monotonic() - started
    assert [len(s["streams"]) for s in result["segments"]] == [4, 5]
    path = folder / "joined.mkv"
    path.write_bytes(await asyncio.to_thread(joined, result["segments"], identity))
    assert decode_errors(path) == (0, "")
    info = probe(path)
    assert abs(info["duration"] - wall) <= 1.0, (info["duration"], wall)
    return info


@pytest.fixture
async def rpc(stack: Stack) -> AsyncIterator[SfuClient]:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=30)
    yield client
    await client.close()


async def test_a_silent_producer_waits_while_the_recording_goes_on(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """On the node: the silent share is answered ``waiting`` at once (no segment is
    tried) and the recording stays on its first segment; once it sends, the same
    request adds it.  The joined file runs the whole recording with no gap in the
    camera and the share from when it began to send."""
    _, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-wait-rec", "pt-wait-rec"
    )
    identity, recording_id, started = await start_recording(rpc, snapshot, producers, "wait")
    gate = asyncio.Event()
    screen = await share_screen(doctor, GatedVideoTrack(gate))
    wanted = {"recordingId": recording_id, "producerIds": [*producers, screen]}

    asked = time.monotonic()
    waiting = await rpc.request("extendRecording", wanted)
    assert waiting["added"] == [] and waiting["waiting"] == [screen]
    assert waiting["segment"] == 0
    assert time.monotonic() - asked < 1.0
    await asyncio.sleep(2)
    gate.set()
    sending_at = time.monotonic() - started
    await asyncio.sleep(1)
    extended = await rpc.request("extendRecording", wanted)
    assert extended["added"] == [screen] and extended["waiting"] == []
    assert extended["segment"] == 1
    await asyncio.sleep(3)
    info = await stopped_whole(rpc, recording_id, identity, started, tmp_path)
    camera = packet_times(info, producers.index(doctor.producers["camera"].id))
    assert max(b - a for a, b in itertools.pairwise(camera)) < 0.2  # no gap
    assert packet_times(info, 4)[0] >= sending_at - 0.3


async def test_the_control_plane_asks_again_for_a_share_that_was_silent(
    stack: Stack, peers: list[MediaPeer], tmp_path: Path
) -> None:
    """Through the API: a screen shared during a recording sends nothing for 12 s.
    The control plane's first extension leaves it waiting; its later attempts add
    it once it sends.  Stopping succeeds and the download holds the five streams,
    the share from about when it began to send."""
    async with aiohttp.ClientSession() as http:
        api = Api(stack, http)
        session_id, physician, _, doctor, _ = await api_call(
            stack, api, peers, ("teleconsultation", "recording")
        )
        token = api.token(physician, "physician")
        started = await api.call("POST", "recording/start", token, {"sessionId": session_id})
        assert started.status == 200, started.body
        recording_id = started.body["recordingId"]
        gate = asyncio.Event()
        await share_screen(doctor, GatedVideoTrack(gate))
        await asyncio.sleep(12)
        gate.set()
        await asyncio.sleep(12)
        stopped = await api.call("POST", "recording/stop", token, {"recordingId": recording_id})
        assert stopped.status == 200, stopped.body
        segments = stopped.body["segments"]
        assert [len(s["tracks"]) for s in segments] == [4, 5]
        # Not the first attempt (about 1 s in, when the share appeared): a later one.
        assert segments[1]["offsetSeconds"] >= 3.0
        status, media, _ = await download(api, recording_id, token)
    assert status == 200
    path = tmp_path / "call.mkv"
    path.write_bytes(media)
    assert decode_errors(path) == (0, "")
    info = probe(path)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio"] * 2 + ["video"] * 3
    assert packet_times(info, 4)[0] >= 11.5


async def test_a_next_segment_whose_ffmpeg_is_killed_leaves_the_recording_running(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient, tmp_path: Path
) -> None:
    """kill -9 of the new segment's ffmpeg before it writes (a screen share was
    added): the answer is ``waiting`` and the first segment goes on; asked again,
    the share is added.  Stopping succeeds with both segments, all decoding.
    Before, any ffmpeg exit failed the recording and deleted what it had."""
    _, doctor, _, snapshot, producers = await live_call(
        stack, peers, redis, "dr-kill-ext", "pt-kill-ext"
    )
    identity, recording_id, started = await start_recording(rpc, snapshot, producers, "kill")
    await asyncio.sleep(2)
    first = children_named(stack.sfu.proc.pid, "ffmpeg")
    screen = await share_screen(doctor)
    await asyncio.sleep(0.5)  # it has sent
    wanted = {"recordingId": recording_id, "producerIds": [*producers, screen]}
    extending = asyncio.create_task(rpc.request("extendRecording", wanted))
    deadline = time.monotonic() + 5
    while not (children_named(stack.sfu.proc.pid, "ffmpeg") - first):
        assert time.monotonic() < deadline, "no ffmpeg for the next segment"
        await asyncio.sleep(0.01)
    for pid in children_named(stack.sfu.proc.pid, "ffmpeg") - first:
        os.kill(pid, signal.SIGKILL)
    failed = await extending
    assert failed["added"] == [] and failed["waiting"] == [screen]
    assert failed["segment"] == 0
    assert children_named(stack.sfu.proc.pid, "ffmpeg") == first  # the first one records on

    extended = await rpc.request("extendRecording", wanted)
    assert extended["added"] == [screen] and extended["segment"] == 1
    await asyncio.sleep(3)
    info = await stopped_whole(rpc, recording_id, identity, started, tmp_path)
    camera = packet_times(info, producers.index(doctor.producers["camera"].id))
    assert max(b - a for a, b in itertools.pairwise(camera)) < 0.2  # no gap
