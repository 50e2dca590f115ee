"""Samples call quality for every participant this control plane serves.

Every ``interval`` seconds: mediasoup stats of each local participant's
producers, consumers and transports (through the SFU RPC) plus the client's
latest own report; converted to base units (call_quality); observed in the
Prometheus histograms; kept as a short history in Redis for the REST detail
endpoints; evaluated by the alert engine.  Raised and cleared alerts are stored
in PostgreSQL, counted, pushed to the staff Socket.IO channel and optionally
handed to a webhook adapter (controlplane/alert_webhook.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog

from controlplane.alert_rules import AlertEngine, Observation, Transition
from controlplane.call_quality import (
    Sample,
    from_client_report,
    from_consumer_stats,
    from_producer_stats,
    quality_score,
)
from controlplane.fallback_policy import FallbackPolicy
from controlplane.metrics import Metrics
from controlplane.room_state import RoomState, room_key
from controlplane.rooms import PeerSession, RoomService
from controlplane.sfu_client import SfuError

log = structlog.get_logger(__name__)

HISTORY_LENGTH = 60  # samples kept per participant
CLIENT_REPORT_MAX_AGE = 10.0  # seconds

StaffPush = Callable[[str, dict[str, Any]], Awaitable[None]]


CONGESTION_LOSS = 0.10


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


def history_key(room_id: str, peer_id: str) -> str:
    return f"{room_key(room_id)}:peer:{peer_id}:quality"


class QualityMonitor:
    def __init__(
        self,
        rooms: RoomService,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        engine: AlertEngine | None = None,
        fallback: FallbackPolicy | None = None,
        staff_push: StaffPush | None = None,
        webhook: Callable[[str, dict[str, Any]], None] | None = None,
        interval: float = 2.0,
    ) -> None:
        self.rooms = rooms
        self.redis = redis
        self.state = RoomState(redis)
        self.pool = pool
        self.metrics = metrics
        self.engine = engine or AlertEngine()
        self.fallback = fallback or FallbackPolicy()
        self.staff_push = staff_push
        self.webhook = webhook
        self.interval = interval

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
        sessions = self.rooms.sessions()
        results = await asyncio.gather(
            *(self._sample_peer(s) for s in sessions), return_exceptions=True
        )
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("peer_sampling_failed", room_id=session.room_id, error=str(result))
        await self._gauges()
        self.metrics.sample_seconds.observe(time.perf_counter() - started)
        return len(sessions)

    async def _gauges(self) -> None:
        room_ids = await self.state.room_ids()
        self.metrics.consultations.set(len(room_ids))
        participants = 0
        for room_id in room_ids:
            participants += len(await self.state.peer_ids(room_id))
        self.metrics.participants.set(participants)
        nodes = await self.rooms.registry.live_nodes()
        self.metrics.sfu_nodes.set(len(nodes))
        for node in nodes:
            self.metrics.sfu_workers.labels(node.id).set(node.workers)
            self.metrics.sfu_load.labels(node.id).set(node.load)

    async def _sample_peer(self, session: PeerSession) -> None:
        try:
            client = await self.rooms.registry.client(session.node_id)
        except SfuError:
            return
        samples: list[Sample] = []
        connected = True
        bandwidth: float | None = None
        for producer_id, source in list(session.producers.items()):
            kind = "audio" if source == "mic" else "video"
            try:
                stats = (await client.request("getProducerStats", {"producerId": producer_id}))[
                    "stats"
                ]
            except SfuError:
                continue
            samples.append(from_producer_stats(kind, stats))
        for consumer_id in list(session.consumers):
            try:
                stats = (await client.request("getConsumerStats", {"consumerId": consumer_id}))[
                    "stats"
                ]
            except SfuError:
                continue
            kind = next((s.get("kind") for s in stats if s.get("kind")), "video")
            samples.append(from_consumer_stats(kind, stats))
        for transport_id in list(session.transports):
            try:
                stats = (await client.request("getTransportStats", {"transportId": transport_id}))[
                    "stats"
                ]
            except SfuError:
                continue
            if stats and stats[0].get("iceState") in ("disconnected", "closed"):
                connected = False
            if stats and session.transports.get(transport_id) == "recv" and session.consumers:
                # The SFU's bandwidth estimate towards this participant.
                estimate = stats[0].get("availableOutgoingBitrate")
                if estimate:
                    bandwidth = float(estimate)
        report = await self.state.client_stats(session.room_id, session.peer_id)
        if report and time.time() - float(report.get("receivedAt", 0)) < CLIENT_REPORT_MAX_AGE:
            samples.extend(from_client_report(report))
        if not samples and connected:
            return
        call_type = session.call_type
        for sample in samples:
            self.metrics.observe(call_type, sample)
        score = quality_score(samples)
        bandwidth = downlink_bandwidth(bandwidth, samples)
        observation = Observation(call_type, tuple(samples), score, connected, bandwidth)
        await self._remember(session, observation)
        for transition in self.engine.evaluate(
            (session.room_id, session.peer_id), observation, time.monotonic()
        ):
            await self._on_transition(transition, session)
        send_losses = [
            s.loss
            for s in samples
            if s.direction == "send" and s.source == "sfu" and s.loss is not None
        ]
        for action in self.fallback.evaluate(
            (session.room_id, session.peer_id),
            bandwidth=bandwidth,
            send_loss=max(send_losses) if send_losses else None,
            rtt=observation.worst("rtt"),
            now=time.monotonic(),
        ):
            log.info(
                "fallback_action",
                action=action.kind,
                room_id=session.room_id,
                peer_id=session.peer_id,
            )
            if action.kind in ("audio_only", "restore_video"):
                await self.rooms.set_video_received(
                    session, action.kind == "restore_video", action.reason
                )
            elif action.kind in ("reduce_bitrate", "restore_bitrate"):
                await self.rooms.set_send_cap(
                    session, action.kind == "reduce_bitrate", action.reason
                )
            elif action.kind == "advise_relay":
                await self.rooms.advise_relay(session, action.reason)

    async def _remember(self, session: PeerSession, observation: Observation) -> None:
        entry = {
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
        key = history_key(session.room_id, session.peer_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry))
        pipe.ltrim(key, 0, HISTORY_LENGTH - 1)
        pipe.expire(key, 3600)
        await pipe.execute()

    async def _on_transition(self, transition: Transition, session: PeerSession) -> None:
        room_id, peer_id = transition.key
        payload = {
            "rule": transition.rule,
            "severity": transition.severity,
            "description": transition.description,
            "roomId": room_id,
            "participantId": peer_id,
            "callType": session.call_type,
            "at": time.time(),
        }
        session_id = await self.pool.fetchval("SELECT id FROM sessions WHERE room_id = $1", room_id)
        payload["sessionId"] = str(session_id) if session_id else None
        if transition.raised:
            self.metrics.alerts.labels(transition.rule, transition.severity).inc()
            payload["alertId"] = await self.pool.fetchval(
                """INSERT INTO alerts (rule, severity, room_id, session_id, participant_id,
                       call_type, description)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                transition.rule,
                transition.severity,
                room_id,
                uuid.UUID(str(session_id)) if session_id else None,
                peer_id,
                session.call_type,
                transition.description,
            )
            log.warning(
                "alert_raised",
                rule=transition.rule,
                severity=transition.severity,
                room_id=room_id,
                participant_id=peer_id,
            )
        else:
            await self.pool.execute(
                """UPDATE alerts SET cleared_at = now() WHERE room_id = $1 AND participant_id = $2
                   AND rule = $3 AND cleared_at IS NULL""",
                room_id,
                peer_id,
                transition.rule,
            )
            log.info("alert_cleared", rule=transition.rule, room_id=room_id, participant_id=peer_id)
        event = "alert" if transition.raised else "alertCleared"
        if self.staff_push is not None:
            await self.staff_push(event, payload)
        if self.webhook is not None:
            self.webhook(event, payload)
