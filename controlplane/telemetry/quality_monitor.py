"""Samples call quality for every participant this control plane serves.

Every ``interval`` seconds: mediasoup stats of each local participant's
producers, consumers and transports (through the SFU RPC) plus the client's
latest own report; converted to base units (call_quality); observed in the
Prometheus histograms; kept as a short history (quality_history) for the REST
detail endpoints; evaluated by the alert engine, whose transitions go to the
alert dispatcher; and by the fallback policy, whose actions the media fallback
service applies.

A call going well is sampled every ``stable_every``-th pass only (3: every 6 s at
the default 2 s): each sample costs the SFU worker a getStats per producer, consumer and
transport.  Going well: not an emergency (those are sampled every pass), connected,
quality score at least STABLE_SCORE, round trip under STABLE_RTT, loss under
STABLE_LOSS, no open alert, no fallback in force.  A sign of trouble pushed to
the control plane (mediasoup's score of one of its consumers below STABLE_SCORE,
a report from its page with a high round trip or loss) brings the participant
back to every pass at once.  Participants are spread over the pass rather than
sampled in one burst.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from controlplane.media.fallback_actions import MediaFallback
from controlplane.media.participants import LocalParticipants, Participant
from controlplane.media.room_state import RoomState
from controlplane.placement.registry import SfuRegistry
from controlplane.placement.sfu_client import SfuClient, SfuError
from controlplane.telemetry.alert_dispatch import AlertDispatcher
from controlplane.telemetry.alert_rules import AlertEngine, Observation
from controlplane.telemetry.call_quality import (
    Sample,
    from_client_report,
    from_consumer_stats,
    from_producer_stats,
    quality_score,
)
from controlplane.telemetry.fallback_policy import FallbackPolicy
from controlplane.telemetry.metrics import Metrics
from controlplane.telemetry.quality_history import QualityHistory

log = structlog.get_logger(__name__)

CLIENT_REPORT_MAX_AGE = 10.0  # seconds

CONGESTION_LOSS = 0.10

STABLE_SCORE = 8.0
STABLE_RTT = 0.25
STABLE_LOSS = 0.02


def downlink_bandwidth(estimate: float | None, samples: list[Sample]) -> float | None:
    """What the path to a participant carries.

    The SFU's bandwidth estimate needs the receiver's congestion feedback
    (browsers send it; some clients do not).  When the receiver reports heavy loss
    the path is saturated, and the goodput (what is sent times what arrives) is
    the better figure.
    """
    received = [s for s in samples if s.direction == "recv" and s.source == "sfu"]
    losses = [s.loss for s in received if s.loss is not None]
    if losses and max(losses) > CONGESTION_LOSS:
        sent = sum(s.bitrate or 0 for s in received)
        goodput = sent * (1 - max(losses))
        return goodput if estimate is None else min(estimate, goodput)
    return estimate


class QualityMonitor:
    def __init__(
        self,
        participants: LocalParticipants,
        state: RoomState,
        registry: SfuRegistry,
        history: QualityHistory,
        metrics: Metrics,
        alerts: AlertDispatcher,
        fallback: MediaFallback,
        *,
        engine: AlertEngine | None = None,
        policy: FallbackPolicy | None = None,
        interval: float = 2.0,
        stable_every: int = 3,
    ) -> None:
        self._participants = participants
        self._state = state
        self._registry = registry
        self._history = history
        self._metrics = metrics
        self._alerts = alerts
        self._fallback = fallback
        self.engine = engine or AlertEngine()
        self.policy = policy or FallbackPolicy(relay_available=fallback.relay_available)
        self.interval = interval
        self.stable_every = max(1, stable_every)
        self._skip: dict[tuple[str, str], int] = {}  # passes to skip (a stable call)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception:
                log.exception("quality_sampling_failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def sample_once(self) -> int:
        started = time.perf_counter()
        participants = [p for p in self._participants.all() if self._due(p)]
        spread = self.interval / 2 / max(1, len(participants))
        results = await asyncio.gather(
            *(self._sample(p, i * spread) for i, p in enumerate(participants)),
            return_exceptions=True,
        )
        for participant, result in zip(participants, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("peer_sampling_failed", room_id=participant.room_id, error=str(result))
        await self._gauges()
        await self._prune()
        self._metrics.sample_seconds.observe(time.perf_counter() - started)
        return len(participants)

    def _due(self, participant: Participant) -> bool:
        key = (participant.room_id, participant.participant_id)
        left = self._skip.get(key, 0)
        if left > 0:
            self._skip[key] = left - 1
            return False
        return True

    def wake(self, room_id: str, participant_id: str) -> None:
        """Sample this participant at the next pass (a sign of trouble)."""
        self._skip.pop((room_id, participant_id), None)

    async def consumer_score(self, consumer_id: str, score: dict[str, Any]) -> None:
        """mediasoup pushed a consumer's score: a low one wakes its subscriber, a low
        producer score (what reaches the SFU) the sender too, if served here."""
        owner = self._participants.consumer_owner(consumer_id)
        if owner is None:
            return
        producer_low = float(score.get("producerScore", 10)) < STABLE_SCORE
        if producer_low or float(score.get("score", 10)) < STABLE_SCORE:
            self.wake(owner.room_id, owner.participant_id)
        if producer_low:
            sender = self._participants.producer_owner(owner.consumers.get(consumer_id, ""))
            if sender is not None:
                self.wake(sender.room_id, sender.participant_id)

    def client_report(self, participant: Participant, report: dict[str, Any]) -> None:
        """A report from the participant's page: high round trip or loss wakes it."""
        samples = from_client_report(report)
        rtts = [s.rtt for s in samples if s.rtt is not None]
        losses = [s.loss for s in samples if s.loss is not None]
        if max(rtts, default=0.0) >= STABLE_RTT or max(losses, default=0.0) >= STABLE_LOSS:
            self.wake(participant.room_id, participant.participant_id)

    def _stable(self, key: tuple[str, str], observation: Observation) -> bool:
        return (
            observation.call_type != "emergency"
            and observation.connected
            and observation.score >= STABLE_SCORE
            and (observation.worst("rtt") or 0.0) < STABLE_RTT
            and (observation.worst("loss") or 0.0) < STABLE_LOSS
            and not self.engine.active(key)
            and self.policy.mode(key) == "normal"
        )

    async def participant_left(self, room_id: str, participant_id: str) -> None:
        """A participant left or was removed (on any instance): its alert and fallback
        state goes, its open alerts are closed; if it joins again it starts afresh."""
        key = (room_id, participant_id)
        self.engine.forget(key)
        self.policy.forget(key)
        self._skip.pop(key, None)
        await self._alerts.participant_left(room_id, participant_id)

    async def _prune(self) -> None:
        """State of participants this instance no longer serves and that left."""
        local = {(p.room_id, p.participant_id) for p in self._participants.all()}
        for key in (self.engine.keys() | self.policy.keys() | set(self._skip)) - local:
            if await self._state.get_participant(*key) is None:
                self.engine.forget(key)
                self.policy.forget(key)
                self._skip.pop(key, None)

    async def _gauges(self) -> None:
        room_ids = await self._state.room_ids()
        self._metrics.consultations.set(len(room_ids))
        count = 0
        for room_id in room_ids:
            count += len(await self._state.participant_ids(room_id))
        self._metrics.participants.set(count)
        nodes = await self._registry.live_nodes()
        self._metrics.sfu_nodes.set(len(nodes))
        for node in nodes:
            self._metrics.sfu_workers.labels(node.id).set(node.workers)
            self._metrics.sfu_load.labels(node.id).set(node.load)

    async def _sample(self, participant: Participant, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        try:
            client = await self._registry.client(participant.node_id)
        except SfuError:
            return
        samples, connected, sfu_bandwidth = await self._sfu_samples(client, participant)
        sfu_samples = list(samples)
        report = await self._state.client_stats(participant.room_id, participant.participant_id)
        if report and time.time() - float(report.get("receivedAt", 0)) < CLIENT_REPORT_MAX_AGE:
            samples.extend(from_client_report(report))
        if not samples and connected:
            return
        call_type = participant.call_type
        for sample in samples:
            self._metrics.observe(call_type, sample)
        score = quality_score(samples)
        bandwidth = downlink_bandwidth(sfu_bandwidth, samples)
        observation = Observation(call_type, tuple(samples), score, connected, bandwidth)
        await self._history.append(
            participant.room_id, participant.participant_id, history_entry(observation)
        )
        key = (participant.room_id, participant.participant_id)
        # A patient's own reports show in its quality view but raise no alert by
        # themselves: alerts on patients come from what the SFU measures.
        judged = observation
        if participant.claims.role == "patient":
            judged = Observation(
                call_type,
                tuple(sfu_samples),
                quality_score(sfu_samples),
                connected,
                downlink_bandwidth(sfu_bandwidth, sfu_samples),
            )
        for transition in self.engine.evaluate(key, judged, time.monotonic()):
            await self._alerts.on_transition(transition, call_type)
        send_losses = [
            s.loss
            for s in samples
            if s.direction == "send" and s.source == "sfu" and s.loss is not None
        ]
        for action in self.policy.evaluate(
            key,
            bandwidth=bandwidth,
            send_loss=max(send_losses) if send_losses else None,
            rtt=observation.worst("rtt"),
            now=time.monotonic(),
            layered=bool(participant.layered),
        ):
            log.info(
                "fallback_action",
                action=action.kind,
                room_id=participant.room_id,
                participant_id=participant.participant_id,
            )
            if action.kind in ("audio_only", "restore_video"):
                await self._fallback.set_video_received(
                    participant, action.kind == "restore_video", action.reason
                )
            elif action.kind in ("reduce_bitrate", "restore_bitrate"):
                await self._fallback.set_send_cap(
                    participant, action.kind == "reduce_bitrate", action.reason
                )
            elif action.kind == "advise_relay":
                await self._fallback.advise_relay(participant, action.reason)
        self._skip[key] = self.stable_every - 1 if self._stable(key, observation) else 0

    async def _sfu_samples(
        self, client: SfuClient, participant: Participant
    ) -> tuple[list[Sample], bool, float | None]:
        """The SFU's view: samples, whether ICE is up, its bandwidth estimate to the client."""
        samples: list[Sample] = []
        connected = True
        bandwidth: float | None = None
        for producer_id, source in list(participant.producers.items()):
            kind = "audio" if source == "mic" else "video"
            stats = await _stats(client, "getProducerStats", {"producerId": producer_id})
            if stats is not None:
                samples.append(from_producer_stats(kind, stats))
        for consumer_id in list(participant.consumers):
            stats = await _stats(client, "getConsumerStats", {"consumerId": consumer_id})
            if stats is not None:
                kind = next((str(s["kind"]) for s in stats if s.get("kind")), "video")
                samples.append(from_consumer_stats(kind, stats))
        for transport_id in list(participant.transports):
            stats = await _stats(client, "getTransportStats", {"transportId": transport_id})
            if stats is None:
                continue
            if stats and stats[0].get("iceState") in ("disconnected", "closed"):
                connected = False
            if (
                stats
                and participant.transports.get(transport_id) == "recv"
                and participant.consumers
            ):
                # The SFU's bandwidth estimate towards this participant.
                estimate = stats[0].get("availableOutgoingBitrate")
                if estimate:
                    bandwidth = float(estimate)
        return samples, connected, bandwidth


async def _stats(
    client: SfuClient, method: str, params: dict[str, str]
) -> list[dict[str, Any]] | None:
    try:
        stats: list[dict[str, Any]] = (await client.request(method, params))["stats"]
    except SfuError:
        return None
    return stats


def history_entry(observation: Observation) -> dict[str, Any]:
    """One quality sample as kept in the history (base units)."""
    return {
        "at": time.time(),
        "score": observation.score,
        "connected": observation.connected,
        "rtt": observation.worst("rtt"),
        "jitter": observation.worst("jitter"),
        "loss": observation.worst("loss"),
        "receiveBitrate": observation.receive_bitrate(),
        "sendBitrate": sum(
            s.bitrate or 0
            for s in observation.samples
            if s.direction == "send" and s.source == "sfu"
        ),
        "streams": [
            {
                "direction": s.direction,
                "kind": s.kind,
                "source": s.source,
                "rtt": s.rtt,
                "jitter": s.jitter,
                "loss": s.loss,
                "bitrate": s.bitrate,
                "score": s.score,
            }
            for s in observation.samples
        ],
    }
