"""aiohttp application factory: builds every service once, in dependency order
(each gets its collaborators through its constructor), and mounts Socket.IO
signaling, the REST API, health and metrics, and the web client.  Background
tasks: the session lifecycle check, the quality monitor, presence and the TURN
health check."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from controlplane.api.context import ApiServices, rate_limit_middleware
from controlplane.api.errors import error_middleware
from controlplane.api.routes import add_routes as add_rest_routes
from controlplane.api.web_page import add_routes as add_web_routes
from controlplane.auth import TokenService
from controlplane.backends import connect_redis
from controlplane.clinical.audit import AuditLog
from controlplane.clinical.audit_integrity import AuditIntegrity, ChainStatus
from controlplane.clinical.audit_search import AuditSearch
from controlplane.clinical.consents import ConsentService, ConsentStore
from controlplane.clinical.data_retention import DataRetention, RetentionReport
from controlplane.clinical.db import create_pool, migrate
from controlplane.clinical.erasure import PatientErasure
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.join_gate import SessionJoinGate
from controlplane.clinical.licences import ClinicianAdmin, LicenceGate, PostgresLicenceRegistry
from controlplane.clinical.lifecycle import SessionLifecycle
from controlplane.clinical.patient_export import PatientExport
from controlplane.clinical.recording_policy import AutoRecorder, StopRecordingsFirst
from controlplane.clinical.recording_retention import RecordingRetention, parse_retention
from controlplane.clinical.recordings import RecordingService
from controlplane.clinical.records import ClinicalRecords
from controlplane.clinical.retention_policy import parse_data_retention
from controlplane.clinical.room_tokens import RoomTokens
from controlplane.clinical.session_access import SessionAccess
from controlplane.clinical.session_participants import SessionParticipants
from controlplane.clinical.session_store import SessionStore
from controlplane.clinical.sessions import SessionService
from controlplane.config import Settings
from controlplane.edge.identity_provider import JwksVerifier
from controlplane.edge.rate_limits import RateLimits, trusted_networks
from controlplane.media.ice_servers import IceServers, TurnConfig
from controlplane.media.services import MediaServices
from controlplane.placement.node_trust import NodeTls
from controlplane.runtime import stop_tasks
from controlplane.telemetry.alert_dispatch import AlertDispatcher
from controlplane.telemetry.alert_store import AlertStore
from controlplane.telemetry.alert_webhook import AlertWebhook
from controlplane.telemetry.metrics import Metrics
from controlplane.telemetry.quality_history import QualityHistory
from controlplane.telemetry.quality_monitor import QualityMonitor
from controlplane.telemetry.quality_reports import QualityReports
from controlplane.telemetry.readiness import Readiness
from controlplane.telemetry.turn_health import TurnCheck, TurnHealth
from signaling.notifier import SocketIONotifier
from signaling.server import SignalingServer, create_sio

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """What the app owns and must stop: connections, services, background tasks."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    media: MediaServices
    lifecycle: SessionLifecycle
    monitor: QualityMonitor
    signaling: SignalingServer
    webhook: AlertWebhook | None
    turn: TurnHealth
    audit: AuditLog
    integrity: AuditIntegrity
    metrics: Metrics
    tasks: list[asyncio.Task[None]]


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)


async def create_app(settings: Settings) -> web.Application:
    if settings.database_admin_url:
        await migrate(settings.database_admin_url, urlparse(settings.database_url).username)
    pool = await create_pool(
        settings.database_url,
        max_size=settings.database_pool_size,
        acquire_timeout=settings.database_pool_timeout,
    )
    redis = connect_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
    )
    tokens = TokenService(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.room_token_ttl,
        api_audience=settings.jwt_api_audience,
        identity_provider=JwksVerifier(
            settings.oidc_jwks_url,
            settings.oidc_issuer,
            settings.oidc_audience or settings.jwt_api_audience,
        )
        if settings.oidc_jwks_url
        else None,
    )
    metrics = Metrics()

    # clinical
    audit = AuditLog(pool)
    cipher = FieldCipher.from_config(settings.data_keys)

    def chain_verified(status: ChainStatus) -> None:
        metrics.audit_chain_ok.labels(status.scope).set(1 if status.ok else 0)
        metrics.audit_chain_verified.labels(status.scope).set_to_current_time()

    integrity = AuditIntegrity(pool, cipher, on_result=chain_verified)
    store = SessionStore(pool)
    access = SessionAccess(store, audit)
    consents = ConsentStore(pool)
    licence_registry = PostgresLicenceRegistry(pool)
    licences = LicenceGate(licence_registry, audit)

    # media
    ice_servers = IceServers(turn_config(settings))

    def turn_checked(check: TurnCheck) -> None:
        metrics.turn_up.labels(f"{check.host}:{check.port}", check.transport).set(
            1 if check.status == "ok" else 0
        )

    turn = TurnHealth(ice_servers, interval=settings.turn_check_interval, on_result=turn_checked)
    sio = create_sio(settings.redis_url, settings.allowed_origins())
    media = MediaServices.build(
        redis,
        SocketIONotifier(sio),
        SessionJoinGate(store, audit, settings.max_duration_overrides()),
        sfu_secret=settings.sfu_secret,
        sfu_rpc_timeout=settings.sfu_rpc_timeout,
        sfu_tls=NodeTls(Path(settings.sfu_ca_file) if settings.sfu_ca_file else None),
        instance_id=settings.instance_id,
        max_peers_per_room=settings.max_peers_per_room,
        resume_window=settings.resume_window,
        ice_servers=ice_servers,
        on_first_media=lambda call_type, seconds: metrics.join_to_media.labels(call_type).observe(
            seconds
        ),
        patients_wait=settings.patients_waiting(),
        erased_name_ttl=settings.room_token_ttl,
    )

    # recordings
    recordings = RecordingService(pool, access, consents, audit, cipher, media.capture)

    async def tell_failed(recording_id: str, room_id: str) -> None:
        await media.capture.tell_stopped(room_id, recording_id, "failed")
        room = await media.state.get_room(room_id)
        await alerts.recording_failed(room_id, recording_id, room.callType if room else "")

    async def recording_failed(recording_id: str, reason: str) -> None:
        room_id = await recordings.mark_failed(recording_id, reason)
        if room_id is not None:
            await tell_failed(recording_id, room_id)

    async def node_lost(node_id: str) -> None:
        for recording_id, room_id in await recordings.fail_on_node(node_id):
            await tell_failed(recording_id, room_id)

    async def recording_stopped(result: dict[str, Any]) -> None:
        room_id = await recordings.completed_by_node(result)
        if room_id is not None:
            await media.capture.tell_stopped(room_id, str(result["recordingId"]), "node_shutdown")

    media.events.recording_failed.append(recording_failed)
    media.events.recording_stopped.append(recording_stopped)
    media.producers.listeners.append(media.capture.producer_added)
    media.events.node_lost.append(node_lost)
    auto_recorder = AutoRecorder(
        recordings,
        store,
        access,
        consents,
        media.capture.senders,
        frozenset(settings.auto_record_clinics),
    )
    media.producers.listeners.append(auto_recorder.producer_added)
    media.registry.on_rejected(lambda reason: metrics.sfu_untrusted.labels(reason).inc())
    lifecycle = SessionLifecycle(
        pool,
        store,
        access,
        audit,
        licences,
        consents,
        StopRecordingsFirst(media.membership, recordings),
        max_duration=settings.max_duration_overrides(),
        inactivity_timeout=settings.inactivity_timeout,
    )
    limits = RateLimits(
        settings.rate_limits, on_limited=lambda name: metrics.rate_limited.labels(name).inc()
    )
    trusted_proxies = trusted_networks(settings.trusted_proxies)
    signaling = SignalingServer(sio, tokens, media, metrics, limits, trusted_proxies)

    # telemetry
    history = QualityHistory(redis)
    alert_store = AlertStore(pool)
    webhook = AlertWebhook(settings.alert_webhook_url) if settings.alert_webhook_url else None
    alerts = AlertDispatcher(
        alert_store,
        store,
        metrics,
        staff_push=signaling.push_staff,
        webhook=webhook.send if webhook else None,
    )
    monitor = QualityMonitor(
        media.participants,
        media.state,
        media.registry,
        history,
        metrics,
        alerts,
        media.fallback,
        interval=settings.stats_interval,
        stable_every=settings.stats_stable_every,
    )

    media.membership.departure_listeners.append(monitor.participant_left)
    media.events.score_changed.append(monitor.consumer_score)
    media.client_stats.report_listeners.append(monitor.client_report)

    app = web.Application(
        client_max_size=1024 * 1024, middlewares=[error_middleware, rate_limit_middleware]
    )
    sio.attach(app, socketio_path="socket.io")
    add_rest_routes(
        app,
        ApiServices(
            tokens=tokens,
            audit=audit,
            sessions=SessionService(pool, store, access, audit, licences, consents, cipher),
            lifecycle=lifecycle,
            room_tokens=RoomTokens(store, audit, tokens, ttl=settings.room_token_ttl),
            participants=SessionParticipants(
                store,
                access,
                audit,
                licences,
                consents,
                tokens,
                media.waiting_room,
                token_ttl=settings.room_token_ttl,
                max_participants=settings.max_peers_per_room,
            ),
            records=ClinicalRecords(pool, access, audit, cipher),
            recordings=recordings,
            consent=ConsentService(consents, audit, lifecycle, recordings),
            clinicians=ClinicianAdmin(licence_registry, audit),
            export=PatientExport(pool, audit, cipher, settings.public_url),
            erasure=PatientErasure(
                pool,
                audit,
                media.erasure,
                parse_data_retention(settings.data_retention),
                parse_retention(settings.recording_retention),
            ),
            audit_search=AuditSearch(pool, audit),
            quality=QualityReports(access, history, alert_store),
            readiness=Readiness(redis, pool, media.registry, integrity, turn),
            metrics=metrics,
            limits=limits,
            trusted_proxies=trusted_proxies,
        ),
    )
    add_web_routes(app, settings.web_dir)
    app[RUNTIME] = Runtime(
        settings,
        pool,
        redis,
        media,
        lifecycle,
        monitor,
        signaling,
        webhook,
        turn,
        audit,
        integrity,
        metrics,
        [],
    )
    app.on_startup.append(_start_tasks)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_close)
    return app


def turn_config(settings: Settings) -> TurnConfig | None:
    if not settings.turn_hosts:
        return None
    return TurnConfig(
        hosts=settings.turn_hosts,
        secret=settings.turn_secret,
        port=settings.turn_port,
        tls_port=settings.turn_tls_port,
        ttl=settings.turn_credential_ttl or settings.room_token_ttl,
    )


async def _start_tasks(app: web.Application) -> None:
    runtime = app[RUNTIME]
    settings = runtime.settings
    background = {
        "session-lifecycle": runtime.lifecycle.run(settings.lifecycle_interval),
        "quality-monitor": runtime.monitor.run(),
        "presence": runtime.media.presence.run(),
        "turn-health": runtime.turn.run(),
        "audit-refusals": runtime.audit.flush_refusals_every(15.0),
        "audit-integrity": runtime.integrity.run(
            settings.audit_verify_interval, settings.audit_full_verify_interval
        ),
    }
    for name, work in background.items():
        runtime.tasks.append(asyncio.create_task(work, name=name))
    metrics = runtime.metrics

    def retention_applied(report: RetentionReport) -> None:
        for data_class, count in report.removed.items():
            metrics.retention_removed.labels(data_class).inc(count)
        for data_class, (rows, size) in report.past_due.items():
            metrics.retention_due_rows.labels(data_class).set(rows)
            metrics.retention_due_bytes.labels(data_class).set(size)

    recording_periods = parse_retention(settings.recording_retention)
    retention = DataRetention(
        runtime.pool,
        runtime.audit,
        parse_data_retention(settings.data_retention),
        RecordingRetention(runtime.pool, runtime.audit, recording_periods),
        recording_periods,
        on_report=retention_applied,
    )
    runtime.tasks.append(
        asyncio.create_task(retention.run(settings.retention_interval), name="data-retention")
    )


async def _drain(app: web.Application) -> None:
    """SIGTERM: calls keep their media; clients reconnect and resume elsewhere."""
    runtime = app[RUNTIME]
    try:
        await runtime.signaling.drain()
    except Exception:
        log.exception("drain_failed")


async def _close(app: web.Application) -> None:
    runtime = app[RUNTIME]
    await stop_tasks(runtime.tasks)
    with contextlib.suppress(Exception):
        await runtime.audit.flush_refusals(all_windows=True)
    if runtime.webhook is not None:
        await runtime.webhook.close()
    await runtime.media.close()
    with contextlib.suppress(Exception):
        await runtime.media.presence.stop()
    await runtime.redis.aclose()
    await runtime.pool.close()
