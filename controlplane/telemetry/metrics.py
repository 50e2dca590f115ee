"""Prometheus metrics (prometheus-client), names ``telemed_*`` in base units.

Labels are low-cardinality only: call type, media kind, source (sfu/client),
direction, signaling event, error code, alert rule and severity, SFU node, garbage
collector generation.  Never a room, session or person: per-consultation detail
is served by the REST endpoints ``metrics/quality`` and ``metrics/network``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controlplane.telemetry.call_quality import Sample

RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
JITTER_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
LOSS_BUCKETS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
JOIN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("call_type", "kind", "source", "direction")
        r = self.registry
        self.rtt = Histogram(
            "telemed_rtt_seconds",
            "Round-trip time per sample",
            labels,
            buckets=RTT_BUCKETS,
            registry=r,
        )
        self.jitter = Histogram(
            "telemed_jitter_seconds",
            "Jitter per sample",
            labels,
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.loss = Histogram(
            "telemed_packet_loss_ratio",
            "Packet loss ratio per sample",
            labels,
            buckets=LOSS_BUCKETS,
            registry=r,
        )
        self.join_to_media = Histogram(
            "telemed_join_to_first_media_seconds",
            "From a participant's join to the first media it receives",
            ("call_type",),
            buckets=JOIN_BUCKETS,
            registry=r,
        )
        self.consultations = Gauge(
            "telemed_active_consultations", "Live consultation rooms", registry=r
        )
        self.participants = Gauge("telemed_participants", "Participants in live rooms", registry=r)
        self.sfu_nodes = Gauge("telemed_sfu_nodes", "Registered live SFU nodes", registry=r)
        self.sfu_workers = Gauge(
            "telemed_sfu_workers", "mediasoup workers per SFU node", ("node",), registry=r
        )
        self.sfu_load = Gauge(
            "telemed_sfu_load",
            "Transports, producers and consumers per node",
            ("node",),
            registry=r,
        )
        self.rate_limited = Counter(
            "telemed_rate_limited_total",
            "Requests refused with RATE_LIMITED, by limit",
            ("limit",),
            registry=r,
        )
        self.sfu_untrusted = Counter(
            "telemed_sfu_untrusted_total",
            "SFU registry entries ignored and node links refused, by reason",
            ("reason",),
            registry=r,
        )
        self.turn_up = Gauge(
            "telemed_turn_server_up",
            "1 when a TURN allocation with a fresh credential succeeded at the last check",
            ("server", "transport"),
            registry=r,
        )
        self.alerts = Counter(
            "telemed_alerts_total", "Alerts raised", ("rule", "severity"), registry=r
        )
        self.signaling_requests = Counter(
            "telemed_signaling_requests_total", "Signaling events handled", ("event",), registry=r
        )
        self.signaling_errors = Counter(
            "telemed_signaling_errors_total",
            "Signaling events answered with an error",
            ("event", "code"),
            registry=r,
        )
        self.gc_pause = Histogram(
            "telemed_gc_pause_seconds",
            "Garbage collections of the control plane and how long each held the event loop",
            ("generation",),
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
            registry=r,
        )
        self.sample_seconds = Histogram(
            "telemed_stats_sampling_seconds",
            "Time to sample the SFU stats of all local rooms",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

        self.audit_chain_ok = Gauge(
            "telemed_audit_chain_ok",
            "1 when the audit chain's last verification (incremental or full) found it intact",
            ("scope",),
            registry=r,
        )
        self.audit_chain_verified = Gauge(
            "telemed_audit_chain_verified_timestamp_seconds",
            "When the audit chain was last verified, by scope",
            ("scope",),
            registry=r,
        )
        self.retention_removed = Counter(
            "telemed_retention_removed_total",
            "Rows (or files) removed by the retention job, by data class",
            ("data_class",),
            registry=r,
        )
        self.retention_due_rows = Gauge(
            "telemed_retention_past_due_rows",
            "Rows past their retention period not yet removed, by data class",
            ("data_class",),
            registry=r,
        )
        self.retention_due_bytes = Gauge(
            "telemed_retention_past_due_bytes",
            "Bytes past their retention period not yet removed, by data class",
            ("data_class",),
            registry=r,
        )

    def observe(self, call_type: str, sample: Sample) -> None:
        labels = (call_type, sample.kind, sample.source, sample.direction)
        if sample.rtt is not None:
            self.rtt.labels(*labels).observe(sample.rtt)
        if sample.jitter is not None:
            self.jitter.labels(*labels).observe(sample.jitter)
        if sample.loss is not None:
            self.loss.labels(*labels).observe(sample.loss)

    def render(self) -> bytes:
        return generate_latest(self.registry)
