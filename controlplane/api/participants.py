"""REST handlers: a session's participants (list, add, remove)."""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import body, caller, services
from schemas import rest as r


async def participants_list(request: web.Request) -> web.Response:
    claims = await caller(request)
    session_id = request.match_info["session_id"]
    return web.json_response(await services(request).participants.listing(claims, session_id))


async def participant_add(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.ParticipantAddSchema())
    added = await services(request).participants.add(
        claims,
        request.match_info["session_id"],
        payload["participantId"],
        payload["role"],
        payload["displayName"],
    )
    return web.json_response(added, status=201)


async def participant_remove(request: web.Request) -> web.Response:
    claims = await caller(request)
    removed = await services(request).participants.remove(
        claims, request.match_info["session_id"], request.match_info["participant_id"]
    )
    return web.json_response(removed)
