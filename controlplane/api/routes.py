"""The REST API's routes under /api/telemedicine/ and its OpenAPI document,
generated from the marshmallow schemas (served at /api/telemedicine/openapi.json)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from controlplane.api import (
    admin,
    consent,
    health,
    metrics,
    participants,
    patients,
    recordings,
    sessions,
)
from controlplane.api.context import SERVICES, ApiServices
from controlplane.api.errors import PREFIX
from schemas import rest as r

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# method, path under PREFIX, handler, request schema, response schema, summary
Route = tuple[str, str, Handler, type[Schema] | None, type[Schema] | None, str]

ROUTES: list[Route] = [
    (
        "POST",
        "session/create",
        sessions.session_create,
        r.SessionCreateSchema,
        r.SessionSchema,
        "Create a session (admin, coordinator, or the physician themself)",
    ),
    (
        "POST",
        "session/start",
        sessions.session_start,
        r.SessionIdSchema,
        r.SessionSchema,
        "Start a session: licence and teleconsultation consent are checked",
    ),
    (
        "POST",
        "session/end",
        sessions.session_end,
        r.SessionEndSchema,
        r.SessionSchema,
        "End a session and close its room",
    ),
    ("GET", "session/{session_id}", sessions.session_get, None, r.SessionSchema, "Read a session"),
    (
        "GET",
        "session/{session_id}/participants",
        participants.participants_list,
        None,
        r.ParticipantListSchema,
        "A session's participants and their roles",
    ),
    (
        "POST",
        "session/{session_id}/participants",
        participants.participant_add,
        r.ParticipantAddSchema,
        r.ParticipantAddedSchema,
        "Add a clinician, interpreter or companion (an invitee's room token in the answer)",
    ),
    (
        "DELETE",
        "session/{session_id}/participants/{participant_id}",
        participants.participant_remove,
        None,
        None,
        "Remove a participant (put out of the room at once)",
    ),
    (
        "POST",
        "recording/start",
        recordings.recording_start,
        r.SessionIdSchema,
        r.RecordingSchema,
        "Start recording an active session (physician or clinic coordinator; recording consent)",
    ),
    (
        "POST",
        "recording/stop",
        recordings.recording_stop,
        r.RecordingIdSchema,
        r.RecordingSchema,
        "Stop a recording",
    ),
    (
        "GET",
        "recording/{recording_id}",
        recordings.recording_get,
        None,
        r.RecordingSchema,
        "Read a recording's metadata",
    ),
    (
        "GET",
        "recording/{recording_id}/media",
        recordings.recording_media,
        None,
        None,
        "Download the decrypted recording (HTTP ranges)",
    ),
    (
        "DELETE",
        "recording/{recording_id}",
        recordings.recording_delete,
        None,
        r.RecordingSchema,
        "Delete a recording (crypto-shredding)",
    ),
    (
        "GET",
        "session/{session_id}/recordings",
        recordings.session_recordings,
        None,
        None,
        "A session's recordings",
    ),
    (
        "POST",
        "session/{session_id}/room-token",
        sessions.session_room_token,
        None,
        r.RoomTokenSchema,
        "Mint a room token for a participant of an active session",
    ),
    (
        "GET",
        "session/{session_id}/records",
        sessions.session_records,
        None,
        None,
        "Clinical records of a session (its physician and patient)",
    ),
    (
        "POST",
        "notes",
        sessions.record_writer("note", r.ClinicalTextSchema),
        r.ClinicalTextSchema,
        r.ClinicalRecordSchema,
        "Clinical note (encrypted at rest)",
    ),
    (
        "POST",
        "prescription",
        sessions.record_writer("prescription", r.ClinicalTextSchema),
        r.ClinicalTextSchema,
        r.ClinicalRecordSchema,
        "Prescription (encrypted at rest)",
    ),
    (
        "POST",
        "followup",
        sessions.record_writer("followup", r.FollowupSchema),
        r.FollowupSchema,
        r.ClinicalRecordSchema,
        "Follow-up (encrypted at rest)",
    ),
    ("GET", "consent/texts", consent.consent_texts, None, None, "Current consent texts"),
    (
        "POST",
        "consent/texts",
        consent.consent_text_publish,
        r.ConsentTextCreateSchema,
        None,
        "Publish a new consent text version (admin)",
    ),
    (
        "POST",
        "consent",
        consent.consent_grant,
        r.ConsentGrantSchema,
        None,
        "Record a patient's consent",
    ),
    (
        "POST",
        "consent/revoke",
        consent.consent_revoke,
        r.ConsentRevokeSchema,
        None,
        "Revoke consent (effective immediately)",
    ),
    (
        "GET",
        "consent/{patient_id}",
        consent.consent_history,
        None,
        None,
        "A patient's consent records",
    ),
    (
        "POST",
        "admin/clinicians",
        admin.clinician_upsert,
        r.ClinicianSchema,
        None,
        "Register a clinician (admin)",
    ),
    (
        "POST",
        "admin/licences",
        admin.licences_load,
        r.LicenceLoadSchema,
        None,
        "Load licence registry entries (admin)",
    ),
    (
        "GET",
        "patients/{patient_id}/export",
        patients.patient_export,
        None,
        None,
        "A patient's data as a FHIR R4 Bundle (the patient, or an admin of their clinic)",
    ),
    (
        "POST",
        "patients/{patient_id}/erasure",
        patients.patient_erasure,
        None,
        None,
        "Erase what no legal duty keeps; the answer says what is kept and until when",
    ),
    (
        "GET",
        "audit",
        patients.audit_search,
        None,
        None,
        "Search the audit trail (admins): ?subject=&actor=&action=&from=&to=&before=&limit="
        "&format=json|csv|fhir",
    ),
    (
        "GET",
        "health/compliance",
        health.compliance_health,
        None,
        None,
        "Audit chain status: since the newest signed checkpoint, and the last full walk",
    ),
    (
        "GET",
        "health/servers",
        health.servers_health,
        None,
        None,
        "SFU nodes and TURN servers, each with its last check (coordinator, admin)",
    ),
    (
        "GET",
        "metrics/duration",
        metrics.duration_metrics,
        None,
        None,
        "Session duration statistics (coordinator, admin)",
    ),
    (
        "GET",
        "metrics/quality",
        metrics.quality_metrics,
        None,
        None,
        "Per participant quality score, loss, jitter: latest and recent history (?sessionId=)",
    ),
    (
        "GET",
        "metrics/network",
        metrics.network_metrics,
        None,
        None,
        "Per participant RTT and bitrates: latest and recent history (?sessionId=)",
    ),
]


# Query strings validated by a schema (documented as query parameters).
QUERY_SCHEMAS: dict[str, type[Schema]] = {"audit": r.AuditQuerySchema}


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
        parameters: list[dict[str, Any]] = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in ("session_id", "patient_id", "recording_id", "participant_id")
            if "{" + name + "}" in path
        ]
        if path in QUERY_SCHEMAS:
            parameters.append({"in": "query", "schema": QUERY_SCHEMAS[path]})
        if parameters:
            operation["parameters"] = parameters
        spec.path(path=f"{PREFIX}/{path}", operations={method.lower(): operation})
    return spec.to_dict()


def add_routes(app: web.Application, api: ApiServices) -> None:
    app[SERVICES] = api
    for method, path, handler, *_ in ROUTES:
        app.router.add_route(method, f"{PREFIX}/{path}", handler)
    app.router.add_get("/health", health.health)
    app.router.add_get("/health/live", health.live)
    app.router.add_get("/metrics", health.prometheus)
    document = build_openapi()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
