"""REST handlers: consent texts and a patient's consent records."""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import body, caller, services
from controlplane.clinical.session_access import actor_of
from schemas import rest as r


async def consent_texts(request: web.Request) -> web.Response:
    return web.json_response({"texts": await services(request).consent.store.texts()})


async def consent_text_publish(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.ConsentTextCreateSchema())
    version = await services(request).consent.publish_text(
        actor_of(claims), payload["purpose"], payload["text"]
    )
    return web.json_response({"purpose": payload["purpose"], "version": version}, status=201)


async def consent_grant(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.ConsentGrantSchema())
    consent_id = await services(request).consent.grant(
        actor_of(claims), payload["patientId"], payload["purpose"], payload["version"]
    )
    return web.json_response({"id": consent_id, **payload}, status=201)


async def consent_revoke(request: web.Request) -> web.Response:
    claims = await caller(request)
    payload = await body(request, r.ConsentRevokeSchema())
    result = await services(request).consent.revoke(
        actor_of(claims), payload["patientId"], payload["purpose"]
    )
    return web.json_response(result)


async def consent_history(request: web.Request) -> web.Response:
    claims = await caller(request)
    patient_id = request.match_info["patient_id"]
    consents = await services(request).consent.history(actor_of(claims), patient_id)
    return web.json_response({"patientId": patient_id, "consents": consents})
