"""A recording port some other process holds (a client's UDP socket can take any
port of the system's ephemeral range; the full run once failed a recording with
"bind failed: Address already in use"): the node tries other ports of its pool
and the recording starts.  A node of the test's own with a 10-pair pool, its
first pair bound for real by another socket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from controlplane.devstack import services as ls
from telemed_client import MediaPeer
from tests.conftest import Stack, start_call
from tests.integration.api_client import Api
from tests.integration.test_recording_capture import decode_errors, probe

pytestmark = pytest.mark.integration

LOW = 62000  # pool 62000-62019: 10 RTP/RTCP pairs


async def rest(
    http: aiohttp.ClientSession, url: str, method: str, path: str, token: str, body: object = None
) -> tuple[int, bytes]:
    async with http.request(
        method,
        f"{url}/api/telemedicine/{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.read()


@pytest.fixture
def own_node(stack: Stack) -> Iterator[str]:
    """A Redis, an SFU node (recording pool LOW..LOW+19) and a control plane."""
    redis = ls.start_redis(stack.data_dir / "redis-ports")
    started = [redis]
    try:
        node = ls.start_sfu_node(
            stack.data_dir,
            redis_url=redis.url,
            secret=stack.sfu_secret,
            node_id="sfu-ports",
            rtc_min_port=46800,
            rtc_max_port=46999,
            num_workers=1,
            extra_env={
                "SFU_RECORDING_MIN_PORT": str(LOW),
                "SFU_RECORDING_MAX_PORT": str(LOW + 19),
            },
        )
        started.append(node)
        control = ls.start_control_plane(
            stack.data_dir, stack.control_plane_env(REDIS_URL=redis.url)
        )
        started.append(control)
        yield control.url
    finally:
        for process in reversed(started):
            process.stop()


async def test_a_taken_recording_port_is_skipped(
    stack: Stack, own_node: str, peers: list[MediaPeer], tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(stack, http)
        physician = await api.licensed_physician()
        patient = await api.consenting_patient(("teleconsultation", "recording"))
        token = api.token(physician, "physician")
        created = await api.call(
            "POST", "session/create", token, api.session_body(physician, patient)
        )
        session_id = created.body["sessionId"]
        started = await api.call("POST", "session/start", token, {"sessionId": session_id})
        members = []
        for subject, role in ((physician, "physician"), (patient, "patient")):
            issued = await api.call(
                "POST", f"session/{session_id}/room-token", api.token(subject, role)
            )
            members.append(MediaPeer(own_node, issued.body["token"]))
        peers.extend(members)
        await start_call(started.body["roomId"], *members)
        await members[1].wait_for_frames(physician, "video", count=5)

        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind(("127.0.0.1", LOW))  # the pool's first RTP port
        try:
            status, body = await rest(
                http, own_node, "POST", "recording/start", token, {"sessionId": session_id}
            )
            assert status == 200, body
            recording_id = json.loads(body)["recordingId"]
            await asyncio.sleep(3)
            status, body = await rest(
                http, own_node, "POST", "recording/stop", token, {"recordingId": recording_id}
            )
            assert status == 200, body
        finally:
            squatter.close()
        status, media = await rest(http, own_node, "GET", f"recording/{recording_id}/media", token)
    assert status == 200
    path = tmp_path / "call.mkv"
    path.write_bytes(media)
    assert decode_errors(path) == (0, "")
    assert sorted(s["codec_type"] for s in probe(path)["streams"]) == ["audio"] * 2 + ["video"] * 2
