"""Schemas for Socket.IO signaling events (client -> server payloads).

Top-level payloads reject unknown fields.  Nested WebRTC objects produced by
mediasoup-client / pymediasoup (RTP parameters and capabilities) are checked for
their required structure and passed through; mediasoup validates them in depth.
"""

from __future__ import annotations

import uuid
from typing import Any

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from schemas.ids import ID_PATTERN
from schemas.json_text import check_encodable

SOURCES_BY_KIND = {"audio": ("mic",), "video": ("camera", "screen")}


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


def _uuid() -> fields.UUID:
    return fields.UUID(required=True)


class EmptySchema(_Strict):
    """Events that take no payload (an empty object or nothing)."""


class ResumeSchema(_Strict):
    consultationId = fields.String(
        required=True, validate=validate.Regexp(ID_PATTERN, error="invalid consultation id")
    )
    # "<epoch>.<random>" as given in the join or resume ack.
    resumeToken = fields.String(
        required=True,
        validate=validate.Regexp(r"^[0-9]{1,9}\.[A-Za-z0-9_-]{16,64}$", error="invalid token"),
    )


class CreateTransportSchema(_Strict):
    direction = fields.String(required=True, validate=validate.OneOf(("send", "recv")))
    # Force TCP candidates only (clients behind UDP-blocking firewalls).
    forceTcp = fields.Boolean(load_default=False)


class FingerprintSchema(_Strict):
    algorithm = fields.String(
        required=True,
        validate=validate.OneOf(("sha-1", "sha-224", "sha-256", "sha-384", "sha-512")),
    )
    value = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}$", error="bad fingerprint"
        ),
    )


class DtlsParametersSchema(_Strict):
    role = fields.String(load_default="auto", validate=validate.OneOf(("auto", "client", "server")))
    fingerprints = fields.List(
        fields.Nested(FingerprintSchema), required=True, validate=validate.Length(min=1, max=8)
    )


class ConnectTransportSchema(_Strict):
    transportId = _uuid()
    dtlsParameters = fields.Nested(DtlsParametersSchema, required=True)


class CodecSchema(_Open):
    mimeType = fields.String(required=True, validate=validate.Regexp(r"^(audio|video)/[\w.-]+$"))
    clockRate = fields.Integer(required=True, validate=validate.Range(min=1))


class RtpParametersSchema(_Open):
    codecs = fields.List(
        fields.Nested(CodecSchema), required=True, validate=validate.Length(min=1, max=32)
    )
    encodings = fields.List(fields.Dict(), validate=validate.Length(max=8))
    headerExtensions = fields.List(fields.Dict(), validate=validate.Length(max=32))
    rtcp = fields.Dict()
    mid = fields.String(validate=validate.Length(max=32))


class ProducerAppDataSchema(_Strict):
    source = fields.String(required=True, validate=validate.OneOf(("mic", "camera", "screen")))


class ProduceSchema(_Strict):
    transportId = _uuid()
    kind = fields.String(required=True, validate=validate.OneOf(("audio", "video")))
    rtpParameters = fields.Nested(RtpParametersSchema, required=True)
    appData = fields.Nested(ProducerAppDataSchema, required=True)
    paused = fields.Boolean(load_default=False)
    # A producer of the same source this one takes over (closed once it exists):
    # a camera sent again with simulcast layers.
    replaces = fields.UUID(load_default=None)

    @validates_schema
    def _source_matches_kind(self, data: dict[str, Any], **_kwargs: Any) -> None:
        source = data["appData"]["source"]
        if source not in SOURCES_BY_KIND[data["kind"]]:
            raise ValidationError(
                f"source {source!r} cannot carry {data['kind']}", field_name="appData"
            )


class RtpCapabilitiesSchema(_Open):
    codecs = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1, max=64))
    headerExtensions = fields.List(fields.Dict(), validate=validate.Length(max=64))


class ConsumeSchema(_Strict):
    rtpCapabilities = fields.Nested(RtpCapabilitiesSchema, required=True)
    # Consume one producer; without it the server creates consumers for every
    # producer in the room this peer may receive and does not yet consume.
    producerId = fields.UUID(load_default=None)


class ReceiveSchema(_Strict):
    """``join``'s ``receive``: the client's device capabilities (its device loaded
    with the room's ``getRouterRtpCapabilities`` before the join)."""

    rtpCapabilities = fields.Nested(RtpCapabilitiesSchema, required=True)
    forceTcp = fields.Boolean(load_default=False)


class JoinSchema(_Strict):
    consultationId = fields.String(
        required=True, validate=validate.Regexp(ID_PATTERN, error="invalid consultation id")
    )
    # Ask for a ready receive transport and consumers of the room's producers in the ack.
    receive = fields.Nested(ReceiveSchema, load_default=None)


class ProducerIdSchema(_Strict):
    producerId = _uuid()


class ConsumerIdSchema(_Strict):
    consumerId = _uuid()


class _TileSchema(_Strict):
    consumerId = _uuid()
    # Device pixels (CSS pixels x devicePixelRatio); 0: not shown.
    width = fields.Integer(required=True, validate=validate.Range(min=0, max=16384))
    height = fields.Integer(required=True, validate=validate.Range(min=0, max=16384))


class TileSizesSchema(_Strict):
    """How large the page shows each remote video (simulcast layer choice)."""

    tiles = fields.List(fields.Nested(_TileSchema), required=True, validate=validate.Length(max=64))


class PeerIdSchema(_Strict):
    """A clinician's decision on a participant of the room (the waiting room)."""

    peerId = fields.String(required=True, validate=validate.Regexp(ID_PATTERN, error="invalid id"))


class RemoveParticipantSchema(PeerIdSchema):
    # "waiting": back to the waiting room; "out": out of the consultation.
    to = fields.String(load_default="out", validate=validate.OneOf(("waiting", "out")))


class TransportIdSchema(_Strict):
    transportId = _uuid()


def load(schema: Schema, payload: Any) -> dict[str, Any]:
    """Validate a payload; ``None`` counts as an empty object.

    Raises marshmallow.ValidationError (turned into VALIDATION_ERROR by signaling).
    """
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ValidationError("payload must be an object")
    check_encodable(payload)
    data: dict[str, Any] = schema.load(payload)
    result: dict[str, Any] = _stringify_ids(data)
    return result


def _stringify_ids(value: Any) -> Any:
    """UUID fields come back as uuid.UUID; the SFU, Redis and JSON use strings."""
    if isinstance(value, dict):
        return {k: _stringify_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_ids(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class _StatsStreamSchema(_Strict):
    direction = fields.String(required=True, validate=validate.OneOf(("inbound", "outbound")))
    kind = fields.String(required=True, validate=validate.OneOf(("audio", "video")))
    source = fields.String(validate=validate.OneOf(("mic", "camera", "screen")))
    producerId = fields.UUID()
    consumerId = fields.UUID()
    peerId = fields.String(validate=validate.Regexp(ID_PATTERN))
    # Seconds, as WebRTC's getStats reports them.
    roundTripTime = fields.Float(validate=validate.Range(min=0, max=60))
    jitter = fields.Float(validate=validate.Range(min=0, max=60))
    # Cumulative counters; RTCP may report negative packetsLost (duplicates).
    packetsLost = fields.Integer(validate=validate.Range(min=-(2**31), max=2**31))
    packets = fields.Integer(validate=validate.Range(min=0))
    lossRatio = fields.Float(validate=validate.Range(min=0, max=1))
    bitrate = fields.Integer(validate=validate.Range(min=0, max=10**10))  # bits per second
    framesPerSecond = fields.Float(validate=validate.Range(min=0, max=1000))
    frameWidth = fields.Integer(validate=validate.Range(min=0, max=16384))
    frameHeight = fields.Integer(validate=validate.Range(min=0, max=16384))
    framesDecoded = fields.Integer(validate=validate.Range(min=0))
    paused = fields.Boolean()


class _StatsConnectionSchema(_Strict):
    roundTripTime = fields.Float(validate=validate.Range(min=0, max=60))
    availableOutgoingBitrate = fields.Integer(validate=validate.Range(min=0, max=10**10))


class StatsReportSchema(_Strict):
    """A client's own WebRTC stats, sent every few seconds."""

    quality = fields.String(required=True, validate=validate.OneOf(("good", "degraded", "poor")))
    connection = fields.Nested(_StatsConnectionSchema, load_default=dict)
    streams = fields.List(
        fields.Nested(_StatsStreamSchema), required=True, validate=validate.Length(max=32)
    )
