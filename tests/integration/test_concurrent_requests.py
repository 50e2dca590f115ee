"""One participant, one order: many identical requests sent at once by the same
connection never exceed a limit nor duplicate anything, and leave no object on
the SFU that the room state does not know (checked against the SFU's own counts)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from controlplane.media.room_state import RoomState
from controlplane.media.transports import MAX_TRANSPORTS_PER_PEER
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration

BURST = 50


@pytest.fixture
async def rpc(stack: Stack):
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    yield client
    await client.close()


async def _burst(peer: MediaPeer, event: str, payloads: list[dict[str, Any]]) -> Counter[str]:
    """Send every payload at once; count the outcomes ("ok" or the error code)."""
    acks = await asyncio.gather(*(peer.sio.call(event, p, timeout=30) for p in payloads))
    return Counter(a["error"]["code"] if "error" in a else "ok" for a in acks)


async def _sfu_counts(rpc: SfuClient) -> tuple[int, int, int]:
    info = await rpc.request("getInfo")
    return info["transports"], info["producers"], info["consumers"]


async def test_burst_of_create_transport_stays_within_the_limit(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient
) -> None:
    room = new_room_id()
    peer = MediaPeer(stack.url, stack.token(room, "pt-burst", "patient"))
    peers.append(peer)
    await peer.connect()
    before = await _sfu_counts(rpc)
    await peer.join(room)

    outcome = await _burst(peer, "createTransport", [{"direction": "recv"}] * BURST)

    assert outcome == {"ok": MAX_TRANSPORTS_PER_PEER, "CONFLICT": BURST - MAX_TRANSPORTS_PER_PEER}
    stored = await RoomState(redis).transports(room, "pt-burst")
    assert len(stored) == MAX_TRANSPORTS_PER_PEER
    after = await _sfu_counts(rpc)
    assert after[0] - before[0] == MAX_TRANSPORTS_PER_PEER

    await peer.leave()
    assert (await _sfu_counts(rpc))[0] == before[0]


async def test_burst_of_join_joins_once(stack: Stack, peers: list[MediaPeer], redis) -> None:
    room = new_room_id()
    peer = MediaPeer(stack.url, stack.token(room, "pt-joins", "patient"))
    peers.append(peer)
    await peer.connect()

    outcome = await _burst(peer, "join", [{"consultationId": room}] * BURST)

    assert outcome == {"ok": 1, "ALREADY_JOINED": BURST - 1}
    assert await RoomState(redis).participant_ids(room) == ["pt-joins"]


def _video_produce(
    template: dict[str, Any], transport_id: str, source: str, mid: int
) -> dict[str, Any]:
    """A produce payload like an existing video producer's, with its own mid and
    SSRC: the SFU itself would accept every one of them."""
    params = {**template, "mid": str(mid)}
    params["encodings"] = [{"ssrc": random.randrange(10**8, 2 * 10**9)}]
    params["rtcp"] = {**template.get("rtcp", {}), "cname": f"burst-{mid}"}
    return {
        "transportId": transport_id,
        "kind": "video",
        "rtpParameters": params,
        "appData": {"source": source},
    }


async def test_burst_of_produce_for_one_source_makes_one_producer(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient
) -> None:
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    camera = doctor.producers["camera"]
    template = camera.rtpParameters.model_dump(exclude_none=True)
    before = await _sfu_counts(rpc)

    bursts = [
        _video_produce(template, doctor.send_transport.id, "screen", 100 + i) for i in range(BURST)
    ]
    outcome = await _burst(doctor, "produce", bursts)

    assert outcome == {"ok": 1, "CONFLICT": BURST - 1}
    sources = [p.source for p in await RoomState(redis).producers_of(room, "dr-ana")]
    assert sorted(sources) == ["camera", "mic", "screen"]
    after = await _sfu_counts(rpc)
    assert after[1] - before[1] == 1
    # The patient consumes the new screen share once (automatically).
    assert after[2] - before[2] <= 1


async def test_burst_of_consume_of_one_producer_makes_one_consumer(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient
) -> None:
    room = new_room_id()
    doctor = MediaPeer(stack.url, stack.token(room, "dr-ana", "physician"))
    viewer = MediaPeer(stack.url, stack.token(room, "pt-view", "patient"), auto_consume=False)
    peers.extend([doctor, viewer])
    for peer in (doctor, viewer):
        await peer.connect()
        await peer.join(room)
    await doctor.start_sending()
    await viewer.request("createTransport", {"direction": "recv"})
    producer_id = doctor.producers["camera"].id
    caps = viewer.device.rtpCapabilities.model_dump(exclude_none=True)
    before = await _sfu_counts(rpc)

    outcome = await _burst(
        viewer, "consume", [{"rtpCapabilities": caps, "producerId": producer_id}] * BURST
    )

    # Every ack succeeds; only the first creates a consumer, the others find it there.
    assert outcome == {"ok": BURST}
    stored = await RoomState(redis).consumers_of(room, "pt-view")
    assert [c.producerId for c in stored] == [producer_id]
    after = await _sfu_counts(rpc)
    assert after[2] - before[2] == 1


async def test_while_moving_to_a_new_send_transport_a_burst_makes_one_more_producer(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    """A move to new transports (the page's move onto the relay) may produce each
    source once more, on the new send transport; a burst still makes just one."""
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    template = doctor.producers["camera"].rtpParameters.model_dump(exclude_none=True)
    new_send = await doctor.request("createTransport", {"direction": "send"})

    bursts = [_video_produce(template, new_send["id"], "camera", 200 + i) for i in range(BURST)]
    outcome = await _burst(doctor, "produce", bursts)

    assert outcome == {"ok": 1, "CONFLICT": BURST - 1}
    sources = [p.source for p in await RoomState(redis).producers_of(room, "dr-ana")]
    assert sorted(sources) == ["camera", "camera", "mic"]
