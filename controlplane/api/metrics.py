"""REST handlers: session durations and per-consultation call quality."""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import caller, services


async def duration_metrics(request: web.Request) -> web.Response:
    claims = await caller(request)
    return web.json_response(
        await services(request).sessions.duration_stats(claims, request.query.get("sessionType"))
    )


async def quality_metrics(request: web.Request) -> web.Response:
    claims = await caller(request)
    return web.json_response(
        await services(request).quality.quality(claims, request.query.get("sessionId", ""))
    )


async def network_metrics(request: web.Request) -> web.Response:
    claims = await caller(request)
    return web.json_response(
        await services(request).quality.network(claims, request.query.get("sessionId", ""))
    )
