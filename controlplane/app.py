"""aiohttp application factory: Socket.IO signaling, health endpoint, room service."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from controlplane.auth import TokenService
from controlplane.config import Settings
from controlplane.room_state import RoomState
from controlplane.rooms import RoomService
from controlplane.sfu_registry import SfuRegistry
from controlplane.web_client import add_routes as add_web_routes
from signaling.notifier import SocketIONotifier
from signaling.server import SignalingServer, create_sio

log = structlog.get_logger(__name__)

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)
ROOMS: web.AppKey[RoomService] = web.AppKey("rooms", RoomService)
TOKENS: web.AppKey[TokenService] = web.AppKey("tokens", TokenService)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    app[REDIS] = redis
    tokens = TokenService(
        settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience, settings.room_token_ttl
    )
    app[TOKENS] = tokens

    sio = create_sio(settings.redis_url, settings.cors_origins)

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
    )
    app[ROOMS] = rooms
    SignalingServer(sio, tokens, rooms)
    sio.attach(app, socketio_path="socket.io")

    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    add_web_routes(app, settings.web_dir)
    app.on_cleanup.append(_close)
    return app


async def live(_request: web.Request) -> web.Response:
    """Liveness: the process serves requests (readiness is /health)."""
    return web.json_response({"status": "ok"})


async def health(request: web.Request) -> web.Response:
    """Liveness and readiness: Redis reachable and at least one SFU node registered."""
    body: dict[str, Any] = {"status": "ok"}
    status = 200
    try:
        await request.app[REDIS].ping()
        body["redis"] = "ok"
    except Exception:
        body["redis"] = "unreachable"
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
    await app[ROOMS].close()
    await app[REDIS].aclose()
