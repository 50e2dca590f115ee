"""REST handlers: clinicians and the licence registry (admins)."""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import body, caller, services
from controlplane.clinical.licences import Licence
from controlplane.clinical.session_access import actor_of
from schemas import rest as r


async def clinician_upsert(request: web.Request) -> web.Response:
    claims = await caller(request)
    services(request).clinicians.require_admin(actor_of(claims))  # before reading the body
    payload = await body(request, r.ClinicianSchema())
    await services(request).clinicians.register(
        actor_of(claims), payload["id"], payload["crm"], payload["uf"], payload["specialties"]
    )
    return web.json_response(payload, status=201)


async def licences_load(request: web.Request) -> web.Response:
    claims = await caller(request)
    services(request).clinicians.require_admin(actor_of(claims))
    payload = await body(request, r.LicenceLoadSchema())
    licences = [
        Licence(
            item["crm"],
            item["uf"],
            item["status"],
            item["telemedicineAuthorized"],
            tuple(item["specialties"]),
        )
        for item in payload["licences"]
    ]
    count = await services(request).clinicians.load(actor_of(claims), licences, payload["source"])
    return web.json_response({"loaded": count})
