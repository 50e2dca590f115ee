"""Signaling contract: bad payloads get VALIDATION_ERROR and change nothing;
bad tokens are refused at connect; a token opens only its own consultation."""

from __future__ import annotations

import time
import uuid

import aiohttp
import jwt
import pytest
import socketio

from controlplane.media.room_state import RoomState
from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration


async def _refused(stack: Stack, token: str | None) -> dict:
    peer = MediaPeer(stack.url, token or "")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await peer.connect()
    assert not peer.sio.connected
    # socket.io's connect_error carries {"message": ..., "data": {"code": ..., "message": ...}}
    assert peer.connect_error["message"] == peer.connect_error["data"]["message"]
    return peer.connect_error["data"]


async def test_forged_token_is_refused_at_connect(stack: Stack) -> None:
    room = new_room_id()
    forged = jwt.encode(
        {
            "iss": "telemed",
            "aud": "telemed-room",
            "sub": "pt-x",
            "role": "patient",
            "consultation": room,
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
        },
        "not-the-server-secret-not-the-server-secret",
        algorithm="HS256",
    )
    error = await _refused(stack, forged)
    assert error["code"] == "UNAUTHORIZED"


async def test_missing_and_garbage_tokens_are_refused(stack: Stack) -> None:
    assert (await _refused(stack, None))["code"] == "UNAUTHORIZED"
    assert (await _refused(stack, "abc.def.ghi"))["code"] == "UNAUTHORIZED"


async def test_unsigned_alg_none_token_is_refused(stack: Stack) -> None:
    claims = {
        "iss": "telemed",
        "aud": "telemed-room",
        "sub": "pt-x",
        "role": "admin",
        "consultation": "c-1",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
        "amr": ["mfa"],
    }
    unsigned = jwt.encode(claims, key="", algorithm="none")
    assert (await _refused(stack, unsigned))["code"] == "UNAUTHORIZED"


async def test_expired_token_is_refused_with_session_expired(stack: Stack) -> None:
    expired = stack.tokens.mint(
        participant_id="pt-old",
        role="patient",
        room_id=new_room_id(),
        now=int(time.time()) - 7200,
        ttl=60,
    )
    assert (await _refused(stack, expired))["code"] == "SESSION_EXPIRED"


async def test_clinician_token_without_mfa_is_refused(stack: Stack) -> None:
    token = stack.tokens.mint(
        participant_id="dr-nomfa", role="physician", room_id=new_room_id(), mfa=False
    )
    assert (await _refused(stack, token))["code"] == "FORBIDDEN"


async def test_token_opens_only_its_own_consultation(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room_a, room_b = new_room_id("a"), new_room_id("b")
    intruder = MediaPeer(stack.url, stack.token(room_a, "pt-a", "patient"))
    peers.append(intruder)
    await intruder.connect()
    with pytest.raises(SignalingError) as refused:
        await intruder.request("join", {"consultationId": room_b})
    assert refused.value.code == "FORBIDDEN"
    assert await RoomState(redis).get_room(room_b) is None


async def test_events_before_join_are_refused_with_not_joined(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    peer = MediaPeer(stack.url, stack.token(new_room_id(), "pt-early", "patient"))
    peers.append(peer)
    await peer.connect()
    for event, payload in (
        ("createTransport", {"direction": "send"}),
        ("getRouterRtpCapabilities", {}),
        ("pauseProducer", {"producerId": str(uuid.uuid4())}),
    ):
        with pytest.raises(SignalingError) as refused:
            await peer.request(event, payload)
        assert refused.value.code == "NOT_JOINED", event


BAD_PAYLOADS = [
    ("join", {}),
    ("join", {"consultationId": ""}),
    ("join", {"consultationId": "x" * 200}),
    ("join", {"consultationId": "ok-1", "role": "admin"}),  # unknown field
    ("join", "not an object"),
    ("createTransport", {"direction": "sideways"}),
    ("connectTransport", {"transportId": "not-a-uuid", "dtlsParameters": {"fingerprints": []}}),
    (
        "connectTransport",
        {
            "transportId": str(uuid.uuid4()),
            "dtlsParameters": {
                "role": "auto",
                "fingerprints": [{"algorithm": "md5", "value": "00"}],
            },
        },
    ),
    (
        "produce",
        {
            "transportId": str(uuid.uuid4()),
            "kind": "audio",
            "rtpParameters": {"codecs": [{"mimeType": "audio/opus", "clockRate": 48000}]},
            "appData": {"source": "camera"},
        },
    ),  # camera cannot carry audio
    (
        "produce",
        {
            "transportId": str(uuid.uuid4()),
            "kind": "video",
            "rtpParameters": {"codecs": []},
            "appData": {"source": "camera"},
        },
    ),
    ("consume", {"rtpCapabilities": {"codecs": "opus"}}),
    ("resumeConsumer", {"consumerId": 42}),
    ("restartIce", {}),
]


@pytest.mark.parametrize(
    ("event", "payload"), BAD_PAYLOADS, ids=[f"{e}-{i}" for i, (e, _) in enumerate(BAD_PAYLOADS)]
)
async def test_bad_payloads_get_validation_error_and_change_nothing(
    stack: Stack, peers: list[MediaPeer], redis, event: str, payload: object
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=3)
    before = await RoomState(redis).snapshot(room)

    with pytest.raises(SignalingError) as refused:
        await doctor.request(event, payload)
    assert refused.value.code == "VALIDATION_ERROR"

    assert await RoomState(redis).snapshot(room) == before
    # The call goes on: media still flows after the bad request.
    video = patient.tracks_from("dr-ana", "video")[0]
    count = video.frames
    await patient.wait_for_frames("dr-ana", "video", count=count + 5)


async def test_rejoin_from_a_new_connection_replaces_the_old_one(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await doctor.wait_for_frames("pt-joao", "video", count=3)

    again = MediaPeer(stack.url, stack.token(room, "pt-joao", "patient"))
    peers.append(again)
    await again.connect()
    info = await again.join(room)
    assert [p["peerId"] for p in info["peers"]] == ["dr-ana"]
    evicted = await patient.wait_for_event("evicted")
    assert evicted["reason"] == "joined_elsewhere"
    await again.start_sending()
    await again.start_receiving()
    await again.wait_for_frames("dr-ana", "video", count=5)
    await doctor.wait_for_frames("pt-joao", "video", count=5)  # from the new connection
    snapshot = await RoomState(redis).snapshot(room)
    patient_entries = [p for p in snapshot["peers"] if p["peerId"] == "pt-joao"]
    assert len(patient_entries) == 1
    assert len(patient_entries[0]["producers"]) == 2


async def test_a_page_of_another_origin_cannot_open_the_socket(stack: Stack) -> None:
    """A browser on another site (Origin header) is refused before any event; the
    consultation page's own origin and non-browser clients (no Origin) connect."""
    url = f"{stack.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        for origin in ("https://evil.example", "http://127.0.0.1:1"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers={"Origin": origin})
            assert refused.value.status == 400
        for headers in ({"Origin": stack.url}, {}):
            async with http.ws_connect(url, headers=headers) as socket:
                assert (await socket.receive_str(timeout=5)).startswith("0{")
