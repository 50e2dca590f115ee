"""Several SFU nodes (issue 14): rooms are spread over them by load; `telemed sfu
drain NODE` stops new rooms on a node while the calls on it go on, and the node
exits once its last room closes.  A Redis, a control plane and two nodes of the
test's own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from controlplane.devstack import services as ls
from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


@dataclass
class Fleet:
    stack: Stack
    redis: ls.ManagedProcess
    control: ls.ManagedProcess
    nodes: dict[str, ls.ManagedProcess]

    def telemed(self, *args: str) -> Any:
        """`telemed ...` as an operator runs it, against this fleet; its JSON output."""
        env = {
            "PATH": "/usr/bin:/bin",
            "REDIS_URL": self.redis.url,
            "SFU_SECRET": self.stack.sfu_secret,
        }
        done = subprocess.run(
            [sys.executable, "-m", "controlplane.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def fleet(stack: Stack) -> Iterator[Fleet]:
    redis = ls.start_redis(stack.data_dir / "redis-drain")
    started = [redis]
    try:
        nodes = {}
        for node_id, low in (("sfu-drain-a", 46000), ("sfu-drain-b", 46500)):
            nodes[node_id] = ls.start_sfu_node(
                stack.data_dir,
                redis_url=redis.url,
                secret=stack.sfu_secret,
                node_id=node_id,
                rtc_min_port=low,
                rtc_max_port=low + 499,
                num_workers=1,
            )
            started.append(nodes[node_id])
        control = ls.start_control_plane(
            stack.data_dir, stack.control_plane_env(REDIS_URL=redis.url)
        )
        started.append(control)
        yield Fleet(stack, redis, control, nodes)
    finally:
        for process in reversed(started):
            process.stop()


async def node_of(fleet: Fleet, room: str) -> str:
    client = aioredis.from_url(fleet.redis.url, decode_responses=True)
    try:
        record = await RoomState(client).get_room(room)
        assert record is not None, room
        return record.nodeId
    finally:
        await client.aclose()


async def alone_in_a_room(fleet: Fleet, peers: list[MediaPeer]) -> tuple[MediaPeer, str]:
    room = new_room_id("drain")
    peer = MediaPeer(fleet.control.url, fleet.stack.token(room, f"dr-{room}", "physician"))
    peers.append(peer)
    await peer.connect()
    await peer.join(room)
    return peer, await node_of(fleet, room)


async def test_rooms_spread_and_a_drained_node_keeps_its_calls_then_exits(
    fleet: Fleet, peers: list[MediaPeer]
) -> None:
    assert {n["id"] for n in fleet.telemed("sfu", "nodes")} == set(fleet.nodes)
    spread = [await alone_in_a_room(fleet, peers) for _ in range(4)]
    assert sorted(node for _, node in spread) == sorted([*fleet.nodes] * 2)  # 2 and 2

    room = new_room_id("drain-call")
    doctor = MediaPeer(fleet.control.url, fleet.stack.token(room, "dr-call", "physician"))
    patient = MediaPeer(fleet.control.url, fleet.stack.token(room, "pt-call", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    drained = await node_of(fleet, room)
    other = next(node for node in fleet.nodes if node != drained)

    answer = fleet.telemed("sfu", "drain", drained)
    assert answer == {"nodeId": drained, "draining": True, "routers": 3}
    listed = {n["id"]: n["draining"] for n in fleet.telemed("sfu", "nodes")}
    assert listed == {drained: True, other: False}
    # New rooms go to the other node, even though the drained one is less loaded now.
    later = [await alone_in_a_room(fleet, peers) for _ in range(3)]
    assert [node for _, node in later] == [other] * 3
    # The call on the drained node goes on: video still decoding both ways.
    for peer, sender in ((doctor, "pt-call"), (patient, "dr-call")):
        track = peer.tracks_from(sender, "video")[0]
        before = track.frames
        await asyncio.sleep(1.5)
        assert track.frames > before + 10, f"{sender}'s video stopped on the drained node"

    # Once its last room closes, the node deregisters and exits on its own.
    for peer, node in spread:
        if node == drained:
            await peer.close()
    await doctor.close()
    await patient.close()
    process = fleet.nodes[drained].proc
    assert await asyncio.to_thread(process.wait, 20) == 0
    assert [n["id"] for n in fleet.telemed("sfu", "nodes")] == [other]
    # The fleet still places rooms: on the node that is left.
    assert (await alone_in_a_room(fleet, peers))[1] == other
