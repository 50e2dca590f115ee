"""aiohttp application factory: Socket.IO signaling, REST API, web client,
health endpoints, and the session lifecycle task."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlparse

import asyncpg
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from controlplane.alert_webhook import AlertWebhook
from controlplane.audit import AuditLog
from controlplane.auth import TokenService
from controlplane.config import Settings
from controlplane.consents import ConsentService, ConsentStore
from controlplane.db import create_pool, migrate
from controlplane.documentation import DocumentationService
from controlplane.field_crypto import FieldCipher
from controlplane.licences import PostgresLicenceRegistry
from controlplane.metrics import CONTENT_TYPE, Metrics
from controlplane.quality_monitor import QualityMonitor
from controlplane.rest_api import Services, error_middleware
from controlplane.rest_api import add_routes as add_rest_routes
from controlplane.room_state import RoomState
from controlplane.rooms import RoomService
from controlplane.sessions import SessionService
from controlplane.sfu_registry import SfuRegistry
from controlplane.web_client import add_routes as add_web_routes
from signaling.notifier import SocketIONotifier
from signaling.server import SignalingServer, create_sio

log = structlog.get_logger(__name__)

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)
ROOMS: web.AppKey[RoomService] = web.AppKey("rooms", RoomService)
TOKENS: web.AppKey[TokenService] = web.AppKey("tokens", TokenService)
POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)
SESSIONS: web.AppKey[SessionService] = web.AppKey("sessions", SessionService)
LIFECYCLE: web.AppKey[dict[str, Any]] = web.AppKey("lifecycle", dict)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
MONITOR: web.AppKey[QualityMonitor] = web.AppKey("monitor", QualityMonitor)
WEBHOOK: web.AppKey[AlertWebhook | None] = web.AppKey("webhook")


async def create_app(settings: Settings) -> web.Application:
    if settings.database_admin_url:
        app_role = urlparse(settings.database_url).username
        await migrate(settings.database_admin_url, app_role)
    pool = await create_pool(settings.database_url)

    app = web.Application(client_max_size=1024 * 1024, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[POOL] = pool
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    app[REDIS] = redis
    tokens = TokenService(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.room_token_ttl,
        api_audience=settings.jwt_api_audience,
    )
    app[TOKENS] = tokens

    audit = AuditLog(pool)
    cipher = FieldCipher.from_config(settings.data_keys)
    consents = ConsentStore(pool)
    licences = PostgresLicenceRegistry(pool)
    sessions = SessionService(
        pool,
        audit,
        licences,
        consents,
        cipher,
        tokens,
        room_token_ttl=settings.room_token_ttl,
        max_duration=settings.max_duration_overrides(),
        inactivity_timeout=settings.inactivity_timeout,
    )
    app[SESSIONS] = sessions

    sio = create_sio(settings.redis_url, settings.cors_origins)
    metrics = Metrics()
    app[METRICS] = metrics

    def registry_factory(service: RoomService) -> SfuRegistry:
        return SfuRegistry(
            redis,
            settings.sfu_secret,
            timeout=settings.sfu_rpc_timeout,
            on_notification=service.on_sfu_notification,
            on_node_lost=service.on_node_lost,
        )

    rooms = RoomService(
        RoomState(redis),
        registry_factory,
        SocketIONotifier(sio),
        instance_id=settings.instance_id,
        max_peers_per_room=settings.max_peers_per_room,
        join_gate=sessions,
        on_first_media=lambda call_type, seconds: metrics.join_to_media.labels(call_type).observe(
            seconds
        ),
    )
    consent = ConsentService(consents, audit)
    consent.on_teleconsultation_revoked = sessions.end_for_consent_revocation
    sessions.close_room = rooms.close_room_for_session
    sessions.count_peers = rooms.peer_count
    app[ROOMS] = rooms
    signaling = SignalingServer(sio, tokens, rooms, metrics)
    webhook = AlertWebhook(settings.alert_webhook_url) if settings.alert_webhook_url else None
    app[WEBHOOK] = webhook
    app[MONITOR] = QualityMonitor(
        rooms,
        redis,
        pool,
        metrics,
        staff_push=signaling.push_staff,
        webhook=webhook.send if webhook else None,
        interval=settings.stats_interval,
    )
    sio.attach(app, socketio_path="socket.io")

    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/metrics", metrics_endpoint)
    add_rest_routes(
        app,
        Services(
            tokens=tokens,
            sessions=sessions,
            consents=consents,
            consent=consent,
            licences=licences,
            documentation=DocumentationService(pool, audit, cipher),
            audit=audit,
            pool=pool,
            redis=redis,
        ),
    )
    add_web_routes(app, settings.web_dir)
    app[LIFECYCLE] = {}
    app.on_startup.append(_start_lifecycle)
    app.on_cleanup.append(_close)
    return app


async def _start_lifecycle(app: web.Application) -> None:
    app[LIFECYCLE]["task"] = asyncio.create_task(_lifecycle_loop(app))
    app[LIFECYCLE]["monitor"] = asyncio.create_task(app[MONITOR].run())


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus exposition (scrape target)."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def _lifecycle_loop(app: web.Application) -> None:
    """End sessions past their maximum duration or idle too long (every instance runs this;
    the database update decides which one ends a given session)."""
    settings = app[SETTINGS]
    while True:
        await asyncio.sleep(settings.lifecycle_interval)
        try:
            await app[SESSIONS].enforce_limits()
        except Exception:
            log.exception("lifecycle_check_failed")


async def live(_request: web.Request) -> web.Response:
    """Liveness: the process serves requests (readiness is /health)."""
    return web.json_response({"status": "ok"})


async def health(request: web.Request) -> web.Response:
    """Readiness: Redis and PostgreSQL reachable and at least one SFU node registered."""
    body: dict[str, Any] = {"status": "ok"}
    status = 200
    try:
        await request.app[REDIS].ping()
        body["redis"] = "ok"
    except Exception:
        body["redis"] = "unreachable"
        status = 503
    try:
        await request.app[POOL].fetchval("SELECT 1")
        body["database"] = "ok"
    except Exception:
        body["database"] = "unreachable"
        status = 503
    try:
        nodes = await request.app[ROOMS].registry.live_nodes()
        body["sfuNodes"] = len(nodes)
        if not nodes:
            status = 503
    except Exception:
        body["sfuNodes"] = 0
        status = 503
    if status != 200:
        body["status"] = "degraded"
    return web.json_response(body, status=status)


async def _close(app: web.Application) -> None:
    for name in ("task", "monitor"):
        task = app[LIFECYCLE].get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if app[WEBHOOK] is not None:
        await app[WEBHOOK].close()
    await app[ROOMS].close()
    await app[REDIS].aclose()
    await app[POOL].close()
