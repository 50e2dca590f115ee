"""REST handlers for the patient's data rights and the audit search:
export (FHIR R4 Bundle), erasure, ``GET audit`` (JSON, CSV or FHIR AuditEvents)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from controlplane.api.context import caller, services
from controlplane.clinical import fhir_resources as fhir
from controlplane.clinical.session_access import actor_of
from schemas import rest as r
from schemas.errors import ApiError, ErrorCode
from schemas.ids import is_valid_id

_CSV_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "outcome",
    "resource_type",
    "resource_id",
    "session_id",
    "classification",
    "details",
)


def _patient_id(request: web.Request) -> str:
    patient_id = request.match_info["patient_id"]
    if not is_valid_id(patient_id):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "invalid patient id")
    return patient_id


async def patient_export(request: web.Request) -> web.Response:
    claims = await caller(request)
    api = services(request)
    patient_id = _patient_id(request)
    clinic = await api.export.scope(claims, patient_id, "patient.export")
    bundle = await api.export.bundle(actor_of(claims), patient_id, clinic)
    return web.json_response(
        bundle,
        content_type="application/fhir+json",
        headers={"Cache-Control": "no-store"},
    )


async def patient_erasure(request: web.Request) -> web.Response:
    claims = await caller(request)
    api = services(request)
    patient_id = _patient_id(request)
    clinic = await api.export.scope(claims, patient_id, "patient.erasure")
    return web.json_response(await api.erasure.erase(actor_of(claims), patient_id, clinic))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    details = entry["details"]
    return {
        "id": entry["id"],
        "at": entry["at"].isoformat(),
        "actorId": entry["actor_id"],
        "actorRole": entry["actor_role"],
        "action": entry["action"],
        "outcome": entry["outcome"],
        "resourceType": entry["resource_type"],
        "resourceId": entry["resource_id"],
        "sessionId": str(entry["session_id"]) if entry["session_id"] else None,
        "classification": entry["classification"],
        "details": json.loads(details) if isinstance(details, str) else details,
    }


async def audit_search(request: web.Request) -> web.StreamResponse:
    claims = await caller(request)
    if claims.role != "admin" or claims.clinic is None or claims.room_id is not None:
        raise ApiError(ErrorCode.FORBIDDEN, "requires one of the roles: admin")
    query = r.AuditQuerySchema().load(dict(request.query))
    output = query.pop("format")
    entries, next_before = await services(request).audit_search.search(
        actor_of(claims),
        claims.clinic,
        subject=query.get("subject"),
        actor_id=query.get("actor"),
        action=query.get("action"),
        since=query.get("since"),
        until=query.get("until"),
        before=query.get("before"),
        limit=query["limit"],
        output=output,
    )
    headers = {"Cache-Control": "no-store"}
    if next_before is not None:
        headers["X-Next-Before"] = str(next_before)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_CSV_COLUMNS)
        for entry in entries:
            writer.writerow([_cell(entry[c]) for c in _CSV_COLUMNS])
        return web.Response(
            text=buffer.getvalue(), content_type="text/csv", charset="utf-8", headers=headers
        )
    if output == "fhir":
        bundle = fhir.collection([fhir.audit_event(e) for e in entries], datetime.now(UTC))
        return web.json_response(
            bundle.model_dump(mode="json", exclude_none=True),
            content_type="application/fhir+json",
            headers=headers,
        )
    return web.json_response(
        {"entries": [_json_entry(e) for e in entries], "nextBefore": next_before},
        headers=headers,
    )
