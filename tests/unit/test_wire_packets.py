"""signaling/wire.py: the packets the server writes are the ones python-socketio's
default packet writes (the same JSON), and incoming packets decode as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from socketio import packet

from signaling.wire import WirePacket

PAYLOADS: list[Any] = [
    {"routerRtpCapabilities": {"codecs": [{"mimeType": "video/VP8", "clockRate": 90000}]}},
    {"error": {"code": "NOT_FOUND", "message": "no such consumer", "details": {}}},
    {"text": "Olá, consulta às 10:00 — ünïcödé", "n": -3, "x": 1.5, "ok": True, "none": None},
    ["peerJoined", {"peerId": "pt-1", "role": "patient", "displayName": ""}],
]


@pytest.mark.parametrize("data", PAYLOADS)
@pytest.mark.parametrize("kind", [packet.ACK, packet.EVENT])
def test_the_wire_packet_writes_what_the_default_packet_writes(data: Any, kind: int) -> None:
    ours = WirePacket(kind, data=data, id=12, namespace="/staff").encode()
    theirs = packet.Packet(kind, data=data, id=12, namespace="/staff").encode()
    assert isinstance(ours, str)
    prefix = theirs[: len(theirs) - len(json.dumps(data, separators=(",", ":")))]
    assert ours.startswith(prefix)
    assert json.loads(ours[len(prefix) :]) == json.loads(theirs[len(prefix) :])


def test_numeric_keys_are_written_as_strings_as_json_does() -> None:
    encoded = WirePacket(packet.ACK, data={1: "a", "b": {2: 3}}, id=1).encode()
    assert json.loads(encoded[2:]) == {"1": "a", "b": {"2": 3}}


def test_incoming_events_decode_including_binary_attachments() -> None:
    event = WirePacket(encoded_packet='21["join",{"consultationId":"c-1"}]')
    assert (event.packet_type, event.id, event.data) == (
        packet.EVENT,
        1,
        ["join", {"consultationId": "c-1"}],
    )
    binary = WirePacket(encoded_packet='51-["upload",{"_placeholder":true,"num":0}]')
    assert binary.attachment_count == 1
    assert binary.add_attachment(b"\x00\x01")
    assert binary.data == ["upload", b"\x00\x01"]


def test_huge_integers_cost_no_big_int_parsing() -> None:
    """Python's int parsing is quadratic in the digits: orjson reads a number past
    64 bits as a float, and a number too long for it goes to engineio's loader,
    which refuses integers over 100 digits."""
    big = WirePacket(encoded_packet="2" + json.dumps(["join", {"n": 10**30}]))
    assert big.data == ["join", {"n": 1e30}] and isinstance(big.data[1]["n"], float)
    with pytest.raises(ValueError):
        WirePacket(encoded_packet='2["join",{"n":1' + "0" * 5000 + "}]")


def test_what_orjson_refuses_is_read_and_written_as_json_did() -> None:
    """A fuzzer's payloads: lone surrogates and infinities in, echoed back out."""
    odd = ["join", {"consultationId": "\ud800x", "n": float("inf")}]
    incoming = WirePacket(encoded_packet="2" + json.dumps(odd))
    assert incoming.data[1]["consultationId"] == "\ud800x"
    assert incoming.data[1]["n"] == float("inf")
    ours = WirePacket(packet.ACK, data=[incoming.data[1]], id=3).encode()
    theirs = packet.Packet(packet.ACK, data=[incoming.data[1]], id=3).encode()
    assert ours == theirs
