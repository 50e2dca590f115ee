"""Health and metrics endpoints: liveness, readiness, compliance, Prometheus."""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import caller, services
from controlplane.telemetry.metrics import CONTENT_TYPE
from schemas.errors import ApiError, ErrorCode


async def live(_request: web.Request) -> web.Response:
    """Liveness: the process serves requests (readiness is /health)."""
    return web.json_response({"status": "ok"})


async def health(request: web.Request) -> web.Response:
    """Readiness: Redis and PostgreSQL reachable and at least one SFU node registered."""
    ready, body = await services(request).readiness.check()
    return web.json_response(body, status=200 if ready else 503)


async def compliance_health(request: web.Request) -> web.Response:
    ok, body = await services(request).readiness.compliance()
    return web.json_response(body, status=200 if ok else 503)


async def servers_health(request: web.Request) -> web.Response:
    """SFU nodes and TURN servers one by one (technical staff: coordinators, admins)."""
    claims = await caller(request)
    if claims.role not in ("coordinator", "admin"):
        raise ApiError(ErrorCode.FORBIDDEN, "requires one of the roles: coordinator, admin")
    return web.json_response(await services(request).readiness.servers())


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus exposition (scrape target)."""
    return web.Response(
        body=services(request).metrics.render(), headers={"Content-Type": CONTENT_TYPE}
    )
