"""What the REST handlers reach: the services (never a pool or a Redis client),
and the two request helpers every handler uses (caller identity, body)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from marshmallow import Schema

from controlplane.auth import ApiClaims, TokenService
from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.audit_search import AuditSearch
from controlplane.clinical.consents import ConsentService
from controlplane.clinical.erasure import PatientErasure
from controlplane.clinical.licences import ClinicianAdmin
from controlplane.clinical.lifecycle import SessionLifecycle
from controlplane.clinical.patient_export import PatientExport
from controlplane.clinical.recordings import RecordingService
from controlplane.clinical.records import ClinicalRecords
from controlplane.clinical.room_tokens import RoomTokens
from controlplane.clinical.session_participants import SessionParticipants
from controlplane.clinical.sessions import SessionService
from controlplane.edge.rate_limits import LOCAL, IpNetwork, RateLimited, RateLimits, client_address
from controlplane.telemetry.metrics import Metrics
from controlplane.telemetry.quality_reports import QualityReports
from controlplane.telemetry.readiness import Readiness
from schemas.errors import ApiError, ErrorCode
from schemas.json_text import check_encodable


@dataclass(frozen=True)
class ApiServices:
    tokens: TokenService
    audit: AuditLog
    sessions: SessionService
    lifecycle: SessionLifecycle
    room_tokens: RoomTokens
    participants: SessionParticipants
    records: ClinicalRecords
    recordings: RecordingService
    consent: ConsentService
    clinicians: ClinicianAdmin
    export: PatientExport
    erasure: PatientErasure
    audit_search: AuditSearch
    quality: QualityReports
    readiness: Readiness
    metrics: Metrics
    limits: RateLimits
    trusted_proxies: tuple[IpNetwork, ...]


SERVICES: web.AppKey[ApiServices] = web.AppKey("api_services", ApiServices)


def services(request: web.Request) -> ApiServices:
    return request.app[SERVICES]


async def caller(request: web.Request, *, room_token: bool = False) -> ApiClaims:
    """The bearer token's identity; a refused token is audited (no token in the log)
    and counted against the client's address: past the failure limit, its requests
    are refused with RATE_LIMITED before any token is checked.  ``room_token``: this
    endpoint also takes a room token (the page's console), for its own session only."""
    api = services(request)
    address = request.get(CLIENT_ADDRESS, LOCAL)
    await api.limits.check("auth_failure_address", address)
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else None
    try:
        try:
            claims = await api.tokens.verify_api_async(token)
        except ApiError:
            if not room_token:
                raise
            claims = api.tokens.verify_room_for_api(token)
    except ApiError as exc:
        # Counted before anything awaits, so concurrent failures cannot slip past
        # the limit; the one over it is a RATE_LIMITED refusal, not an auth one.
        await api.limits.hit("auth_failure_address", address)
        raise await api.audit.deny(
            Actor(None, None),
            "api.auth",
            exc.code,
            exc.message,
            details={"path": request.path[:100]},
        ) from None
    await api.limits.hit("rest_caller", claims.subject)
    return claims


CLIENT_ADDRESS = "client_address"


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Requests per client address; a refusal is audited (aggregated, no address)."""
    if request.path.startswith("/socket.io/"):
        return await handler(request)  # Socket.IO has limits of its own
    api = services(request)
    address = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), api.trusted_proxies
    )
    request[CLIENT_ADDRESS] = address
    try:
        await api.limits.hit("rest_address", address)
        return await handler(request)
    except RateLimited as exc:
        await api.audit.deny(
            Actor(None, None),
            "api.rate_limited",
            exc.code,
            exc.message,
            details={"limit": exc.limit},
        )
        raise


async def body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The JSON body, validated (a ValidationError becomes VALIDATION_ERROR)."""
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body must be JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body must be a JSON object")
    check_encodable(payload)
    data: dict[str, Any] = schema.load(payload)
    return data
