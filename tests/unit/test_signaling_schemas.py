"""Signaling payload schemas (pure logic)."""

from __future__ import annotations

import uuid

import pytest
from marshmallow import ValidationError

from schemas import signaling as s

FINGERPRINT = ":".join(["AB"] * 32)
RTP = {
    "codecs": [{"mimeType": "video/VP8", "clockRate": 90000, "payloadType": 96}],
    "encodings": [{"ssrc": 1234}],
    "mid": "0",
}


def test_produce_accepts_mediasoup_client_parameters_and_returns_string_ids() -> None:
    tid = uuid.uuid4()
    data = s.load(
        s.ProduceSchema(),
        {
            "transportId": str(tid),
            "kind": "video",
            "rtpParameters": RTP,
            "appData": {"source": "screen"},
        },
    )
    assert data["transportId"] == str(tid)
    assert data["paused"] is False
    # Nested WebRTC fields pass through for mediasoup to check in depth.
    assert data["rtpParameters"]["codecs"][0]["payloadType"] == 96


@pytest.mark.parametrize(
    ("kind", "source", "ok"),
    [
        ("audio", "mic", True),
        ("video", "camera", True),
        ("video", "screen", True),
        ("audio", "camera", False),
        ("video", "mic", False),
        ("audio", "screen", False),
    ],
)
def test_source_must_match_kind(kind: str, source: str, ok: bool) -> None:
    payload = {
        "transportId": str(uuid.uuid4()),
        "kind": kind,
        "rtpParameters": RTP,
        "appData": {"source": source},
    }
    if ok:
        s.load(s.ProduceSchema(), payload)
    else:
        with pytest.raises(ValidationError):
            s.load(s.ProduceSchema(), payload)


def test_unknown_top_level_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as error:
        s.load(s.JoinSchema(), {"consultationId": "c-1", "role": "admin"})
    assert "role" in error.value.messages


def test_none_payload_counts_as_empty_object() -> None:
    assert s.load(s.EmptySchema(), None) == {}
    with pytest.raises(ValidationError):
        s.load(s.EmptySchema(), ["not", "an", "object"])


def test_dtls_parameters_need_a_real_fingerprint() -> None:
    good = {
        "transportId": str(uuid.uuid4()),
        "dtlsParameters": {
            "role": "client",
            "fingerprints": [{"algorithm": "sha-256", "value": FINGERPRINT}],
        },
    }
    assert s.load(s.ConnectTransportSchema(), good)["dtlsParameters"]["role"] == "client"
    bad = {**good, "dtlsParameters": {"fingerprints": [{"algorithm": "sha-256", "value": "zz"}]}}
    with pytest.raises(ValidationError):
        s.load(s.ConnectTransportSchema(), bad)


def test_consume_producer_id_is_optional() -> None:
    caps = {"codecs": [{"mimeType": "audio/opus", "kind": "audio", "clockRate": 48000}]}
    assert s.load(s.ConsumeSchema(), {"rtpCapabilities": caps})["producerId"] is None
    pid = str(uuid.uuid4())
    assert (
        s.load(s.ConsumeSchema(), {"rtpCapabilities": caps, "producerId": pid})["producerId"] == pid
    )


@pytest.mark.parametrize("cid", ["", " c", "c/1", "x" * 65, "ü"])
def test_consultation_ids_are_bounded(cid: str) -> None:
    with pytest.raises(ValidationError):
        s.load(s.JoinSchema(), {"consultationId": cid})
