"""REST API under /api/telemedicine/: sessions, consent, licences, clinical
documentation, compliance health and duration metrics; errors as
``{"error": {"code", "message"}}`` (never a stack trace); an OpenAPI document
generated from the marshmallow schemas at /api/telemedicine/openapi.json."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, ValidationError

from controlplane.audit import Actor, AuditLog
from controlplane.auth import ApiClaims, TokenService
from controlplane.consents import ConsentService, ConsentStore
from controlplane.documentation import DocumentationService
from controlplane.licences import (
    Licence,
    PostgresLicenceRegistry,
    register_clinician,
    valid_crm,
)
from controlplane.quality_monitor import history_key
from controlplane.sessions import SessionService, actor_of
from schemas import rest as r
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

PREFIX = "/api/telemedicine"

HTTP_STATUS = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.PHYSICIAN_NOT_AUTHORIZED: 403,
    ErrorCode.RECORDING_PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.COMPLIANCE_VIOLATION: 409,
    ErrorCode.SFU_UNAVAILABLE: 503,
}


@dataclass
class Services:
    tokens: TokenService
    sessions: SessionService
    consents: ConsentStore
    consent: ConsentService
    licences: PostgresLicenceRegistry
    documentation: DocumentationService
    audit: AuditLog
    pool: Any
    redis: Any = None


SERVICES: web.AppKey[Services] = web.AppKey("rest_services", Services)


def _error(code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(
        ApiError(code, message, details).to_payload(), status=HTTP_STATUS.get(code, 500)
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("rest_error", path=request.path, code=str(exc.code))
        return _error(exc.code, exc.message, exc.details)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        log.info("rest_invalid_payload", path=request.path, fields=sorted(map(str, messages)))
        return _error(ErrorCode.VALIDATION_ERROR, "invalid payload", messages)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith(PREFIX):
            code = ErrorCode.NOT_FOUND if exc.status == 404 else ErrorCode.VALIDATION_ERROR
            return web.json_response(
                ApiError(code, exc.reason or "error").to_payload(), status=exc.status
            )
        raise
    except Exception:
        log.exception("rest_internal_error", path=request.path)
        return _error(ErrorCode.INTERNAL_ERROR, "internal error")


async def _claims(request: web.Request) -> ApiClaims:
    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else None
    try:
        return services.tokens.verify_api(token)
    except ApiError as exc:
        await services.audit.record(
            Actor(None, None),
            "api.auth",
            outcome="denied",
            details={"code": str(exc.code), "path": request.path[:100]},
        )
        raise


async def _body(request: web.Request, schema: Schema) -> dict[str, Any]:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body must be JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "the body must be a JSON object")
    data: dict[str, Any] = schema.load(payload)
    return data


def _require_role(claims: ApiClaims, *roles: str) -> None:
    if claims.role not in roles:
        raise ApiError(ErrorCode.FORBIDDEN, f"requires one of the roles: {', '.join(roles)}")


# ---- sessions -----------------------------------------------------------------------


async def session_create(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.SessionCreateSchema())
    return web.json_response(await request.app[SERVICES].sessions.create(claims, body), status=201)


async def session_start(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.SessionIdSchema())
    return web.json_response(
        await request.app[SERVICES].sessions.start(claims, str(body["sessionId"]))
    )


async def session_end(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.SessionEndSchema())
    result = await request.app[SERVICES].sessions.end(
        claims, str(body["sessionId"]), body["reason"]
    )
    return web.json_response(result)


async def session_get(request: web.Request) -> web.Response:
    claims = await _claims(request)
    return web.json_response(
        await request.app[SERVICES].sessions.get(claims, request.match_info["session_id"])
    )


async def session_room_token(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.RoomTokenRequestSchema()) if request.can_read_body else {}
    return web.json_response(
        await request.app[SERVICES].sessions.room_token(
            claims, request.match_info["session_id"], body.get("displayName", "")
        )
    )


async def session_records(request: web.Request) -> web.Response:
    claims = await _claims(request)
    records = await request.app[SERVICES].documentation.read(
        claims, request.match_info["session_id"]
    )
    return web.json_response({"records": records})


# ---- clinical documentation ------------------------------------------------------------


def _writer(kind: str, schema: type[Schema]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        claims = await _claims(request)
        body = await _body(request, schema())
        result = await request.app[SERVICES].documentation.write(
            claims, kind, str(body["sessionId"]), body["text"], body.get("dueAt")
        )
        return web.json_response(result, status=201)

    return handler


# ---- consent ------------------------------------------------------------------------------


async def consent_texts(request: web.Request) -> web.Response:
    return web.json_response({"texts": await request.app[SERVICES].consents.texts()})


async def consent_text_publish(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.ConsentTextCreateSchema())
    version = await request.app[SERVICES].consent.publish_text(
        actor_of(claims), body["purpose"], body["text"]
    )
    return web.json_response({"purpose": body["purpose"], "version": version}, status=201)


async def consent_grant(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.ConsentGrantSchema())
    consent_id = await request.app[SERVICES].consent.grant(
        actor_of(claims), body["patientId"], body["purpose"], body["version"]
    )
    return web.json_response({"id": consent_id, **body}, status=201)


async def consent_revoke(request: web.Request) -> web.Response:
    claims = await _claims(request)
    body = await _body(request, r.ConsentRevokeSchema())
    result = await request.app[SERVICES].consent.revoke(
        actor_of(claims), body["patientId"], body["purpose"]
    )
    return web.json_response(result)


async def consent_history(request: web.Request) -> web.Response:
    claims = await _claims(request)
    patient_id = request.match_info["patient_id"]
    consents = await request.app[SERVICES].consent.history(actor_of(claims), patient_id)
    return web.json_response({"patientId": patient_id, "consents": consents})


# ---- admin: clinicians and licences -------------------------------------------------------


async def clinician_upsert(request: web.Request) -> web.Response:
    claims = await _claims(request)
    _require_role(claims, "admin")
    body = await _body(request, r.ClinicianSchema())
    services = request.app[SERVICES]
    if not valid_crm(body["crm"], body["uf"]):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "invalid CRM", {"crm": ["invalid CRM"]})
    await register_clinician(
        services.pool, body["id"], body["crm"], body["uf"], body["specialties"]
    )
    await services.audit.record(
        Actor(claims.subject, claims.role),
        "clinician.upsert",
        resource_type="clinician",
        resource_id=body["id"],
    )
    return web.json_response(body, status=201)


async def licences_load(request: web.Request) -> web.Response:
    claims = await _claims(request)
    _require_role(claims, "admin")
    body = await _body(request, r.LicenceLoadSchema())
    services = request.app[SERVICES]
    licences = [
        Licence(
            item["crm"],
            item["uf"],
            item["status"],
            item["telemedicineAuthorized"],
            tuple(item["specialties"]),
        )
        for item in body["licences"]
    ]
    count = await services.licences.upsert(licences, body["source"])
    await services.audit.record(
        Actor(claims.subject, claims.role),
        "licence.load",
        resource_type="licence_registry",
        details={"count": count},
    )
    return web.json_response({"loaded": count})


# ---- health and metrics -----------------------------------------------------------------------


async def compliance_health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    chain = await services.audit.verify()
    body: dict[str, Any] = {
        "status": "ok" if chain["status"] == "ok" else "broken",
        "auditChain": {"status": chain["status"], "entries": chain["entries"]},
    }
    if chain["status"] != "ok":
        body["auditChain"].update(firstBadId=chain.get("firstBadId"), reason=chain.get("reason"))
    return web.json_response(body, status=200 if chain["status"] == "ok" else 503)


async def duration_metrics(request: web.Request) -> web.Response:
    claims = await _claims(request)
    session_type = request.query.get("sessionType")
    return web.json_response(
        await request.app[SERVICES].sessions.duration_stats(claims, session_type)
    )


async def _quality_history(request: web.Request) -> tuple[str, list[dict[str, Any]]]:
    """Per participant of a session: recent quality samples (newest first) and open alerts."""
    claims = await _claims(request)
    services = request.app[SERVICES]
    session_id = request.query.get("sessionId", "")
    session = await services.sessions.readable_for_staff(claims, session_id)
    participants = []
    for participant_id, role in sorted(session.participants.items()):
        raw = await services.redis.lrange(history_key(session.room_id, participant_id), 0, -1)
        history = [json.loads(item) for item in raw]
        alerts = await services.pool.fetch(
            """SELECT rule, severity, raised_at FROM alerts WHERE room_id = $1
               AND participant_id = $2 AND cleared_at IS NULL ORDER BY raised_at""",
            session.room_id,
            participant_id,
        )
        participants.append(
            {
                "participantId": participant_id,
                "role": role,
                "latest": history[0] if history else None,
                "history": history,
                "openAlerts": [
                    {
                        "rule": a["rule"],
                        "severity": a["severity"],
                        "raisedAt": a["raised_at"].isoformat(),
                    }
                    for a in alerts
                ],
            }
        )
    return session.id, participants


async def quality_metrics(request: web.Request) -> web.Response:
    session_id, participants = await _quality_history(request)
    keep = ("at", "score", "loss", "jitter", "connected")
    for p in participants:
        p["history"] = [{k: h.get(k) for k in keep} for h in p["history"]]
        p["latest"] = p["history"][0] if p["history"] else None
    return web.json_response(
        {
            "sessionId": session_id,
            "units": {"jitter": "seconds", "loss": "ratio", "score": "0-10"},
            "participants": participants,
        }
    )


async def network_metrics(request: web.Request) -> web.Response:
    session_id, participants = await _quality_history(request)
    keep = ("at", "rtt", "receiveBitrate", "sendBitrate", "connected", "streams")
    for p in participants:
        p["history"] = [{k: h.get(k) for k in keep} for h in p["history"]]
        p["latest"] = p["history"][0] if p["history"] else None
    return web.json_response(
        {
            "sessionId": session_id,
            "units": {"rtt": "seconds", "bitrate": "bits per second"},
            "participants": participants,
        }
    )


# ---- routing and OpenAPI ------------------------------------------------------------------------

ROUTES: list[tuple[str, str, Callable[..., Any], type[Schema] | None, type[Schema] | None, str]] = [
    (
        "POST",
        "session/create",
        session_create,
        r.SessionCreateSchema,
        r.SessionSchema,
        "Create a session (admin, coordinator, or the physician themself)",
    ),
    (
        "POST",
        "session/start",
        session_start,
        r.SessionIdSchema,
        r.SessionSchema,
        "Start a session: licence and teleconsultation consent are checked",
    ),
    (
        "POST",
        "session/end",
        session_end,
        r.SessionEndSchema,
        r.SessionSchema,
        "End a session and close its room",
    ),
    ("GET", "session/{session_id}", session_get, None, r.SessionSchema, "Read a session"),
    (
        "POST",
        "session/{session_id}/room-token",
        session_room_token,
        None,
        r.RoomTokenSchema,
        "Mint a room token for a participant of an active session",
    ),
    (
        "GET",
        "session/{session_id}/records",
        session_records,
        None,
        None,
        "Clinical records of a session (its physician and patient)",
    ),
    (
        "POST",
        "notes",
        _writer("note", r.ClinicalTextSchema),
        r.ClinicalTextSchema,
        r.ClinicalRecordSchema,
        "Clinical note (encrypted at rest)",
    ),
    (
        "POST",
        "prescription",
        _writer("prescription", r.ClinicalTextSchema),
        r.ClinicalTextSchema,
        r.ClinicalRecordSchema,
        "Prescription (encrypted at rest)",
    ),
    (
        "POST",
        "followup",
        _writer("followup", r.FollowupSchema),
        r.FollowupSchema,
        r.ClinicalRecordSchema,
        "Follow-up (encrypted at rest)",
    ),
    ("GET", "consent/texts", consent_texts, None, None, "Current consent texts"),
    (
        "POST",
        "consent/texts",
        consent_text_publish,
        r.ConsentTextCreateSchema,
        None,
        "Publish a new consent text version (admin)",
    ),
    ("POST", "consent", consent_grant, r.ConsentGrantSchema, None, "Record a patient's consent"),
    (
        "POST",
        "consent/revoke",
        consent_revoke,
        r.ConsentRevokeSchema,
        None,
        "Revoke consent (effective immediately)",
    ),
    ("GET", "consent/{patient_id}", consent_history, None, None, "A patient's consent records"),
    (
        "POST",
        "admin/clinicians",
        clinician_upsert,
        r.ClinicianSchema,
        None,
        "Register a clinician (admin)",
    ),
    (
        "POST",
        "admin/licences",
        licences_load,
        r.LicenceLoadSchema,
        None,
        "Load licence registry entries (admin)",
    ),
    ("GET", "health/compliance", compliance_health, None, None, "Audit chain status"),
    (
        "GET",
        "metrics/duration",
        duration_metrics,
        None,
        None,
        "Session duration statistics (coordinator, admin)",
    ),
    (
        "GET",
        "metrics/quality",
        quality_metrics,
        None,
        None,
        "Per participant quality score, loss, jitter: latest and recent history (?sessionId=)",
    ),
    (
        "GET",
        "metrics/network",
        network_metrics,
        None,
        None,
        "Per participant RTT and bitrates: latest and recent history (?sessionId=)",
    ),
]


def build_openapi() -> dict[str, Any]:
    spec = APISpec(
        title="telemed API", version="1", openapi_version="3.0.3", plugins=[MarshmallowPlugin()]
    )
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.schema("Error", schema=r.ErrorSchema)
    for method, path, _handler, request_schema, response_schema, summary in ROUTES:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "4XX": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        if path != "health/compliance" and not (method == "GET" and path == "consent/texts"):
            operation["security"] = [{"bearer": []}]
        if request_schema is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": request_schema}},
            }
        if response_schema is not None:
            operation["responses"]["200"] = {
                "description": "OK",
                "content": {"application/json": {"schema": response_schema}},
            }
        parameters = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in ("session_id", "patient_id")
            if "{" + name + "}" in path
        ]
        if parameters:
            operation["parameters"] = parameters
        spec.path(path=f"{PREFIX}/{path}", operations={method.lower(): operation})
    return spec.to_dict()


def add_routes(app: web.Application, services: Services) -> None:
    app[SERVICES] = services
    for method, path, handler, *_ in ROUTES:
        app.router.add_route(method, f"{PREFIX}/{path}", handler)
    document = build_openapi()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
