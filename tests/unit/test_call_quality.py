"""Base units from mediasoup 3.12 stats."""

from __future__ import annotations

from controlplane.telemetry.call_quality import (
    from_client_report,
    from_consumer_stats,
    from_producer_stats,
    quality_score,
)


def test_producer_jitter_in_clock_units_becomes_seconds_and_fraction_lost_a_ratio() -> None:
    sample = from_producer_stats(
        "video",
        [{"type": "inbound-rtp", "jitter": 900, "fractionLost": 64, "bitrate": 500000, "score": 9}],
    )
    assert sample.jitter == 0.01  # 900 / 90 kHz
    assert sample.loss == 0.25
    assert sample.bitrate == 500000 and sample.score == 9
    audio = from_producer_stats("audio", [{"type": "inbound-rtp", "jitter": 480}])
    assert audio.jitter == 0.01  # 480 / 48 kHz


def test_consumer_rtt_in_ms_becomes_seconds() -> None:
    sample = from_consumer_stats(
        "video",
        [
            {"type": "outbound-rtp", "roundTripTime": 250.0, "fractionLost": 0, "bitrate": 800000},
            {"type": "inbound-rtp", "jitter": 5},
        ],
    )
    assert sample.rtt == 0.25 and sample.loss == 0 and sample.direction == "recv"


def test_no_streams_give_empty_samples() -> None:
    assert from_consumer_stats("audio", []).rtt is None
    assert from_producer_stats("audio", [{"type": "outbound-rtp"}]).jitter is None


def test_client_reports_keep_seconds_and_fall_back_to_the_connection_rtt() -> None:
    samples = from_client_report(
        {
            "quality": "good",
            "connection": {"roundTripTime": 0.04},
            "streams": [
                {
                    "direction": "inbound",
                    "kind": "video",
                    "jitter": 0.01,
                    "lossRatio": 0.02,
                    "bitrate": 300000,
                }
            ],
        }
    )
    assert (
        samples[0].rtt == 0.04 and samples[0].source == "client" and samples[0].direction == "recv"
    )


def test_quality_score_prefers_mediasoup_score() -> None:
    assert (
        quality_score(
            from_client_report(
                {"streams": [{"direction": "inbound", "kind": "video", "roundTripTime": 0.65}]}
            )
        )
        < 5
    )
    assert (
        quality_score(
            [
                from_consumer_stats(
                    "video", [{"type": "outbound-rtp", "score": 7, "roundTripTime": 900}]
                )
            ]
        )
        == 7
    )


def test_downlink_bandwidth_uses_goodput_only_on_a_lossy_path() -> None:
    from controlplane.telemetry.call_quality import Sample
    from controlplane.telemetry.quality_monitor import downlink_bandwidth

    clean = [Sample("recv", "video", "sfu", loss=0.01, bitrate=400_000)]
    assert downlink_bandwidth(1_000_000, clean) == 1_000_000
    lossy = [
        Sample("recv", "video", "sfu", loss=0.5, bitrate=400_000),
        Sample("recv", "audio", "sfu", loss=0.2, bitrate=40_000),
    ]
    assert downlink_bandwidth(1_000_000, lossy) == 220_000  # 440k sent, half arrives
    assert downlink_bandwidth(None, lossy) == 220_000
    assert downlink_bandwidth(None, []) is None
