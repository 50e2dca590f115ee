"""The fallback ladder under a real bandwidth cap: the SFU -> patient path is
policed to ~200 kbps on loopback (nftables ``limit rate`` on the patient's ICE
port); the patient goes audio only (both sides told) and gets video back once
the cap is lifted."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration

TABLE = "telemed_test_cap"


def _cap(port: int) -> None:
    subprocess.run(["nft", "add", "table", "inet", TABLE], check=True)
    subprocess.run(
        ["nft", "add", "chain", "inet", TABLE, "input", "{ type filter hook input priority 0; }"],
        check=True,
    )
    # 25 kbytes/s = 200 kbit/s from the SFU's media ports to the patient's port.
    subprocess.run(
        [
            "nft",
            "add",
            "rule",
            "inet",
            TABLE,
            "input",
            "iif",
            "lo",
            "udp",
            "sport",
            "45000-45999",
            "udp",
            "dport",
            str(port),
            "limit",
            "rate",
            "over",
            "25",
            "kbytes/second",
            "drop",
        ],
        check=True,
    )


def _uncap() -> None:
    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)


async def test_bandwidth_cap_goes_audio_only_and_back(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=10)
    recv_id = next(
        t for t, d in (await RoomState(redis).transports(room, "pt-joao")).items() if d == "recv"
    )
    rpc = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        stats = (await rpc.request("getTransportStats", {"transportId": recv_id}))["stats"][0]
    finally:
        await rpc.close()
    port = stats["iceSelectedTuple"]["remotePort"]

    try:
        _cap(port)
        fallback = await patient.wait_for_event(
            "mediaFallback", lambda d: d["mode"] == "audio_only", timeout=45
        )
        assert "256 kbps" in fallback["reason"]
        told = await doctor.wait_for_event(
            "peerMediaFallback",
            lambda d: d["peerId"] == "pt-joao" and d["mode"] == "audio_only",
            timeout=5,
        )
        assert told["mode"] == "audio_only"
        consumers = await RoomState(redis).consumers_of(room, "pt-joao")
        assert {c.kind: c.paused for c in consumers} == {"audio": False, "video": True}
        video = patient.tracks_from("dr-ana", "video")[0]
        await asyncio.sleep(1.0)
        frozen = video.frames
        await asyncio.sleep(2.0)
        assert video.frames - frozen <= 3, "video kept flowing in audio-only mode"
    finally:
        _uncap()

    # Capacity is back: the next probe restores video, and it stays.
    await patient.wait_for_event("mediaFallback", lambda d: d["mode"] == "normal", timeout=45)
    resumed_from = video.frames
    # A probe may still see the cap's last losses and step back once before it holds.
    for _ in range(300):
        if video.frames >= resumed_from + 15:
            break
        await asyncio.sleep(0.1)
    assert video.frames >= resumed_from + 15, "video did not come back"
    consumers = await RoomState(redis).consumers_of(room, "pt-joao")
    assert all(not c.paused for c in consumers)
