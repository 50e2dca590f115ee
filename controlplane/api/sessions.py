"""REST handlers: sessions, room tokens and clinical records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from marshmallow import Schema

from controlplane.api.context import body, caller, services
from schemas import rest as r


async def session_create(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.SessionCreateSchema())
    return web.json_response(await services(request).sessions.create(claims, payload), status=201)


async def session_start(request: web.Request) -> web.Response:
    claims = await caller(request)
    session_id = str((await body(request, r.SessionIdSchema()))["sessionId"])
    api = services(request)
    await api.lifecycle.start(claims, session_id)
    return web.json_response(await api.sessions.describe(session_id))


async def session_end(request: web.Request) -> web.Response:
    claims = await caller(request, room_token=True)
    payload = await body(request, r.SessionEndSchema())
    session_id = str(payload["sessionId"])
    api = services(request)
    await api.lifecycle.end(claims, session_id, payload["reason"])
    return web.json_response(await api.sessions.describe(session_id))


async def session_get(request: web.Request) -> web.Response:
    claims = await caller(request)
    return web.json_response(
        await services(request).sessions.get(claims, request.match_info["session_id"])
    )


async def session_room_token(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.RoomTokenRequestSchema()) if request.can_read_body else {}
    return web.json_response(
        await services(request).room_tokens.issue(
            claims, request.match_info["session_id"], payload.get("displayName", "")
        )
    )


async def session_records(request: web.Request) -> web.Response:
    claims = await caller(request, room_token=True)
    records = await services(request).records.read(claims, request.match_info["session_id"])
    return web.json_response({"records": records})


def record_writer(
    kind: str, schema: type[Schema]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST handler for one kind of clinical record (note, prescription, follow-up)."""

    async def handler(request: web.Request) -> web.Response:
        claims = await caller(request, room_token=True)
        payload = await body(request, schema())
        result = await services(request).records.write(
            claims, kind, str(payload["sessionId"]), payload["text"], payload.get("dueAt")
        )
        return web.json_response(result, status=201)

    return handler
