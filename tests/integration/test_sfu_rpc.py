"""The SFU node's RPC API, called directly: authentication, stats of a live
call, ICE restart, bitrate cap, and errors with types."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import pytest

from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient, SfuRequestError, SfuUnavailable
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration


@pytest.fixture
async def rpc(stack: Stack):
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    yield client
    await client.close()


async def test_wrong_secret_is_refused(stack: Stack) -> None:
    client = SfuClient("sfu-test-1", stack.sfu.url, "wrong-secret-wrong-secret", timeout=5)
    with pytest.raises(SfuUnavailable, match="refused our credentials"):
        await client.request("getInfo")
    await client.close()


async def test_unreachable_node_is_a_clear_error() -> None:
    client = SfuClient("sfu-nowhere", "ws://127.0.0.1:9", "x" * 20, timeout=2, connect_timeout=2)
    with pytest.raises(SfuUnavailable, match="unreachable"):
        await client.request("getInfo")
    await client.close()


async def test_errors_carry_their_type(rpc: SfuClient) -> None:
    with pytest.raises(SfuRequestError) as missing:
        await rpc.request("closeRouter", {})
    assert missing.value.error_type == "INVALID_PARAMS"
    with pytest.raises(SfuRequestError) as unknown:
        await rpc.request(
            "getTransportStats", {"transportId": "00000000-0000-0000-0000-000000000000"}
        )
    assert unknown.value.error_type == "NOT_FOUND"
    with pytest.raises(SfuRequestError) as profile:
        await rpc.request("createRouter", {"profile": "karaoke"})
    assert profile.value.error_type == "INVALID_PARAMS"


async def test_stats_of_a_live_call_show_media_flowing(
    stack: Stack, peers: list[MediaPeer], redis, rpc: SfuClient
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=20)
    state = RoomState(redis)

    send_id = next(t for t, d in (await state.transports(room, "dr-ana")).items() if d == "send")
    transport = (await rpc.request("getTransportStats", {"transportId": send_id}))["stats"][0]
    assert transport["iceState"] in ("connected", "completed")
    assert transport["dtlsState"] == "connected"
    assert transport["bytesReceived"] > 10_000
    assert transport["iceSelectedTuple"]["remoteIp"] == "127.0.0.1"

    camera = doctor.producers["camera"].id
    producer_stats = (await rpc.request("getProducerStats", {"producerId": camera}))["stats"]
    assert producer_stats[0]["type"] == "inbound-rtp"
    assert producer_stats[0]["packetCount"] > 20

    consumer = next(c for c in await state.consumers_of(room, "pt-joao") if c.kind == "video")
    consumer_stats = (await rpc.request("getConsumerStats", {"consumerId": consumer.consumerId}))[
        "stats"
    ]
    outbound = next(s for s in consumer_stats if s["type"] == "outbound-rtp")
    # The patient decoded 20 frames from it: at least a packet each went out (a frame
    # is decoded as soon as its last packet is in, so exactly 20 is possible).
    assert outbound["packetCount"] >= 20

    usage = (await rpc.request("getWorkerResourceUsage"))["workers"]
    assert all(w["alive"] for w in usage) and sum(w["cpuUserMs"] for w in usage) > 0

    assert await rpc.request(
        "setMaxIncomingBitrate", {"transportId": send_id, "bitrate": 600_000}
    ) == {"bitrate": 600_000}


async def test_restart_ice_gives_new_credentials(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, _patient = await _start_pair(stack, peers, room)
    transport = doctor.send_transport
    first = await doctor.request("restartIce", {"transportId": transport.id})
    second = await doctor.request("restartIce", {"transportId": transport.id})
    assert first["iceParameters"]["usernameFragment"] != second["iceParameters"]["usernameFragment"]
    # Another participant's transport is not this one's to restart.
    other = next(iter(await RoomState(redis).transports(room, "pt-joao")))
    with pytest.raises(SignalingError) as refused:
        await doctor.request("restartIce", {"transportId": other})
    assert refused.value.code == "NOT_FOUND"
    audited = stack.psql(
        "SELECT count(*) FROM audit_log WHERE action = 'signaling.restartIce' "
        f"AND outcome = 'denied' AND actor_id = 'dr-ana' AND resource_id = '{room}'"
    )
    assert int(audited) == 1


async def test_moving_to_new_transports_then_closing_the_old_ones(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    """What a page does to move onto the relay without leaving: new transports,
    everything consumed again on the new receive transport, the old ones closed;
    the others hear of the closed producers, and Redis keeps only the new."""
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    state = RoomState(redis)
    old_recv = patient.recv_transport.id
    old_consumers = {c.consumerId for c in await state.consumers_of(room, "pt-joao")}
    assert old_consumers

    created = await patient.request("createTransport", {"direction": "recv"})
    again = await patient.request(
        "consume", {"rtpCapabilities": patient.device.rtpCapabilities.model_dump(exclude_none=True)}
    )
    assert {c["producerId"] for c in again["consumers"]} == {
        p.id for p in doctor.producers.values()
    }
    assert not {c["id"] for c in again["consumers"]} & old_consumers
    # On the new transport it is consumed now: asking again makes nothing new.
    assert (
        await patient.request(
            "consume",
            {"rtpCapabilities": patient.device.rtpCapabilities.model_dump(exclude_none=True)},
        )
    )["consumers"] == []

    assert await patient.request("closeTransport", {"transportId": old_recv}) == {"closed": True}
    for _ in range(50):
        left = {c.consumerId for c in await state.consumers_of(room, "pt-joao")}
        if not left & old_consumers:
            break
        await asyncio.sleep(0.1)
    assert left == {c["id"] for c in again["consumers"]}
    assert set(await state.transports(room, "pt-joao")) == {
        patient.send_transport.id,
        created["id"],
    }

    # The doctor closes its sending transport: the patient hears its producers closed.
    closed = {p.id for p in doctor.producers.values()}
    await doctor.request("closeTransport", {"transportId": doctor.send_transport.id})
    for producer_id in closed:
        await patient.wait_for_event(
            "producerClosed", lambda d, p=producer_id: d["producerId"] == p
        )
    assert not await state.producers_of(room, "dr-ana")

    # Not the patient's any more, and never the doctor's to close.
    for transport_id, who in ((old_recv, patient), (created["id"], doctor)):
        with pytest.raises(SignalingError) as refused:
            await who.request("closeTransport", {"transportId": transport_id})
        assert refused.value.code == "NOT_FOUND"


async def test_plain_rtp_in_is_forwarded_to_a_plain_rtp_consumer(rpc: SfuClient) -> None:
    """createPlainTransport / connectPlainTransport (the capacity benchmark's media
    path): Opus sent into one plain transport comes out of a consumer on another,
    at the address it was connected to, with the consumer's SSRC and the same
    payload; a WebRTC transport is refused as a plain one."""
    router = await rpc.request("createRouter", {"profile": "consultation"})
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        routing = {"routerId": router["routerId"]}
        send = await rpc.request("createPlainTransport", {**routing, "comedia": True})
        opus = {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}
        produced = await rpc.request(
            "produce",
            {
                "transportId": send["transportId"],
                "kind": "audio",
                "rtpParameters": {"codecs": [opus], "encodings": [{"ssrc": 4242}]},
            },
        )
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        recv = await rpc.request("createPlainTransport", routing)
        await rpc.request(
            "connectPlainTransport",
            {"transportId": recv["transportId"], "ip": "127.0.0.1", "port": sink.getsockname()[1]},
        )
        consumer = await rpc.request(
            "consume",
            {
                "transportId": recv["transportId"],
                "producerId": produced["producerId"],
                "rtpCapabilities": router["rtpCapabilities"],
            },
        )
        await rpc.request("resumeConsumer", {"consumerId": consumer["consumerId"]})
        ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        payloads: list[bytes] = []
        for seq in range(50):
            packet = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 4242) + bytes([seq]) * 40
            source.sendto(packet, (send["ip"], send["port"]))
            await asyncio.sleep(0.02)
            with contextlib.suppress(TimeoutError, BlockingIOError):
                while True:
                    data = sink.recv(2048)
                    if data[1] < 200 and struct.unpack_from("!I", data, 8)[0] == ssrc:
                        payloads.append(_rtp_payload(data))
                    sink.settimeout(0.001)
            sink.settimeout(0.2)
        assert len(payloads) >= 40, len(payloads)
        assert all(len(set(p)) == 1 and len(p) == 40 for p in payloads)
        webrtc = await rpc.request("createWebRtcTransport", routing)
        with pytest.raises(SfuRequestError) as refused:
            await rpc.request(
                "connectPlainTransport",
                {"transportId": webrtc["transportId"], "ip": "127.0.0.1", "port": 9},
            )
        assert refused.value.error_type == "INVALID_PARAMS"
    finally:
        source.close()
        sink.close()
        await rpc.request("closeRouter", {"routerId": router["routerId"]})


def _rtp_payload(packet: bytes) -> bytes:
    """What follows an RTP header, its CSRCs and its header extension."""
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        offset += 4 + 4 * struct.unpack_from("!H", packet, offset + 2)[0]
    return packet[offset:]
