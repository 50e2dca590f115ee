"""Call-quality figures from mediasoup 3.12 stats and from clients' own reports.

mediasoup 3.12 gives (see DESIGN.md): RTT only on a consumer's outbound stream
(``roundTripTime``, ms); jitter on a producer's inbound stream (``jitter``, RTP
clock units: divide by the codec clock rate); loss as ``packetsLost`` and
``fractionLost`` (0-255); ``score`` 0-10; ``bitrate`` on streams.  Everything
here is converted to base units: seconds, ratios, bits per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLOCK_RATE = {"audio": 48000, "video": 90000}


@dataclass(frozen=True)
class Sample:
    """One direction of one participant's media at one moment."""

    direction: str  # "send" (participant -> SFU) or "recv" (SFU -> participant)
    kind: str  # audio | video
    source: str  # sfu | client
    rtt: float | None = None  # seconds
    jitter: float | None = None  # seconds
    loss: float | None = None  # ratio 0..1
    bitrate: float | None = None  # bits per second
    score: float | None = None  # 0..10


def from_producer_stats(
    kind: str, stats: list[dict[str, Any]], clock_rate: int | None = None
) -> Sample:
    """A producer's inbound-rtp stats: what the SFU receives from the participant."""
    inbound = [s for s in stats if s.get("type") == "inbound-rtp"]
    if not inbound:
        return Sample("send", kind, "sfu")
    rate = clock_rate or CLOCK_RATE.get(kind, 90000)
    jitter = max(float(s.get("jitter", 0)) for s in inbound) / rate
    loss = max(float(s.get("fractionLost", 0)) for s in inbound) / 256.0
    bitrate = sum(float(s.get("bitrate", 0)) for s in inbound)
    score = min(float(s.get("score", 10)) for s in inbound)
    return Sample("send", kind, "sfu", jitter=jitter, loss=loss, bitrate=bitrate, score=score)


def from_consumer_stats(kind: str, stats: list[dict[str, Any]]) -> Sample:
    """A consumer's outbound-rtp stats: what the SFU sends to the participant."""
    outbound = [s for s in stats if s.get("type") == "outbound-rtp"]
    if not outbound:
        return Sample("recv", kind, "sfu")
    rtts = [float(s["roundTripTime"]) / 1000.0 for s in outbound if s.get("roundTripTime")]
    loss = max(float(s.get("fractionLost", 0)) for s in outbound) / 256.0
    bitrate = sum(float(s.get("bitrate", 0)) for s in outbound)
    score = min(float(s.get("score", 10)) for s in outbound)
    return Sample(
        "recv",
        kind,
        "sfu",
        rtt=max(rtts) if rtts else None,
        loss=loss,
        bitrate=bitrate,
        score=score,
    )


def from_client_report(report: dict[str, Any]) -> list[Sample]:
    """A browser's reportStats (already validated): seconds and ratios as sent."""
    samples = []
    connection_rtt = (report.get("connection") or {}).get("roundTripTime")
    for stream in report.get("streams", []):
        samples.append(
            Sample(
                "send" if stream["direction"] == "outbound" else "recv",
                stream["kind"],
                "client",
                rtt=stream.get("roundTripTime", connection_rtt),
                jitter=stream.get("jitter"),
                loss=stream.get("lossRatio"),
                bitrate=stream.get("bitrate"),
            )
        )
    return samples


def quality_score(samples: list[Sample]) -> float:
    """0..10 for a participant: mediasoup's score when present, else from RTT and loss."""
    scores = [s.score for s in samples if s.score is not None]
    if scores:
        return min(scores)
    penalty = 0.0
    for s in samples:
        if s.rtt is not None:
            penalty = max(penalty, min(10.0, max(0.0, (s.rtt - 0.15) * 20)))
        if s.loss is not None:
            penalty = max(penalty, min(10.0, s.loss * 100))
    return round(10.0 - penalty, 2)
