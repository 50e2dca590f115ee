"""FHIR R4 resources for a patient's data, built and validated with ``fhir.resources``
(its R4B models: FHIR 4.3, the R4 line; every resource used here is unchanged from
4.0.1).  Pure functions from database rows to validated models; no I/O.

Identifiers: the platform's own ids are kept as ``identifier`` values under
``urn:telemed:*`` systems; resource ids are those ids where they are valid FHIR
ids (sessions, records and recordings are UUIDs) and a UUID derived from the
patient id for the Patient.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource

SYSTEM = "urn:telemed"
_PATIENT_NAMESPACE = uuid.UUID("6f0d3c1e-54a4-4f5e-9a57-3c1d8e0f7a21")
_ENCOUNTER_STATUS = {
    "scheduled": "planned",
    "active": "in-progress",
    "ended": "finished",
    "cancelled": "cancelled",
}
_DOCUMENT_TYPE = {
    # LOINC document types
    "note": ("11506-3", "Progress note"),
    "prescription": ("57833-6", "Prescription for medication"),
    "followup": ("18776-5", "Plan of care note"),
}


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def patient_resource_id(patient_id: str) -> str:
    return str(uuid.uuid5(_PATIENT_NAMESPACE, patient_id))


def _participant(participant_id: str, role: str) -> dict[str, Any]:
    return {
        "type": [{"text": role}],
        "individual": {
            "identifier": {"system": f"{SYSTEM}:participant", "value": participant_id},
            "display": role,
        },
    }


def patient(patient_id: str) -> Patient:
    return Patient.model_validate(
        {
            "resourceType": "Patient",
            "id": patient_resource_id(patient_id),
            "identifier": [{"system": f"{SYSTEM}:patient", "value": patient_id}],
        }
    )


def encounter(session: dict[str, Any], participants: list[dict[str, Any]]) -> Encounter:
    start = session["started_at"] or session["scheduled_for"]
    period = {"start": _when(start)}
    if session["ended_at"] is not None:
        period["end"] = _when(session["ended_at"])
    return Encounter.model_validate(
        {
            "resourceType": "Encounter",
            "id": str(session["id"]),
            "identifier": [{"system": f"{SYSTEM}:room", "value": session["room_id"]}],
            "status": _ENCOUNTER_STATUS[session["status"]],
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "VR",
                "display": "virtual",
            },
            "type": [{"text": session["session_type"]}],
            "serviceType": {"text": session["specialty"]},
            "subject": {"reference": f"Patient/{patient_resource_id(session['patient_id'])}"},
            "participant": [_participant(p["participant_id"], p["role"]) for p in participants],
            "period": period,
            "serviceProvider": {
                "identifier": {"system": f"{SYSTEM}:clinic", "value": session["clinic_id"]}
            },
        }
    )


def consent(row: dict[str, Any]) -> Consent:
    period = {"start": _when(row["granted_at"])}
    if row["revoked_at"] is not None:
        period["end"] = _when(row["revoked_at"])
    return Consent.model_validate(
        {
            "resourceType": "Consent",
            "id": f"consent-{row['id']}",
            "status": "inactive" if row["revoked_at"] is not None else "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient_resource_id(row['patient_id'])}"},
            "dateTime": _when(row["granted_at"]),
            "policy": [{"uri": f"{SYSTEM}:consent-text:{row['purpose']}:{row['version']}"}],
            "provision": {
                "type": "permit",
                "period": period,
                "purpose": [{"system": f"{SYSTEM}:consent-purpose", "code": row["purpose"]}],
            },
        }
    )


def document(row: dict[str, Any], patient_id: str, text: str) -> DocumentReference:
    code, display = _DOCUMENT_TYPE[row["kind"]]
    attachment: dict[str, Any] = {
        "contentType": "text/plain; charset=utf-8",
        "data": base64.b64encode(text.encode()).decode(),
        "creation": _when(row["created_at"]),
    }
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": str(row["id"]),
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "category": [{"text": row["kind"]}],
        "subject": {"reference": f"Patient/{patient_resource_id(patient_id)}"},
        "date": _when(row["created_at"]),
        "author": [{"identifier": {"system": f"{SYSTEM}:participant", "value": row["author_id"]}}],
        "content": [{"attachment": attachment}],
        "context": {"encounter": [{"reference": f"Encounter/{row['session_id']}"}]},
    }
    if row.get("due_at") is not None:
        resource["context"]["period"] = {"end": _when(row["due_at"])}
    return DocumentReference.model_validate(resource)


def media(row: dict[str, Any], patient_id: str, download_url: str) -> Media:
    resource: dict[str, Any] = {
        "resourceType": "Media",
        "id": str(row["id"]),
        "status": "completed",
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "video"}
            ]
        },
        "subject": {"reference": f"Patient/{patient_resource_id(patient_id)}"},
        "encounter": {"reference": f"Encounter/{row['session_id']}"},
        "content": {"contentType": "video/x-matroska", "url": download_url},
    }
    if row["stopped_at"] is not None:
        resource["createdPeriod"] = {
            "start": _when(row["started_at"]),
            "end": _when(row["stopped_at"]),
        }
    if row["duration_ms"] is not None:
        resource["duration"] = row["duration_ms"] / 1000
    return Media.model_validate(resource)


def _audit_action(action: str) -> str:
    verb = action.rsplit(".", 1)[-1]
    if verb in ("create", "grant", "start", "publish", "add"):
        return "C"
    if verb in ("read", "get", "list", "export", "media", "download"):
        return "R"
    if verb in ("delete", "shred", "erasure", "remove", "retention_shred"):
        return "D"
    if verb in ("update", "revoke", "end", "stop", "rewrap"):
        return "U"
    return "E"


def audit_event(row: dict[str, Any]) -> AuditEvent:
    entity: list[dict[str, Any]] = []
    if row["resource_id"] is not None:
        entity.append(
            {
                "what": {
                    "identifier": {
                        "system": f"{SYSTEM}:{row['resource_type'] or 'resource'}",
                        "value": row["resource_id"],
                    }
                }
            }
        )
    if row["session_id"] is not None:
        entity.append({"what": {"reference": f"Encounter/{row['session_id']}"}})
    return AuditEvent.model_validate(
        {
            "resourceType": "AuditEvent",
            "id": f"audit-{row['id']}",
            "type": {"system": f"{SYSTEM}:audit-action", "code": row["action"]},
            "action": _audit_action(row["action"]),
            "recorded": _when(row["at"]),
            # 0 success, 4 minor failure (a refusal), 8 serious failure
            "outcome": {"success": "0", "denied": "4"}.get(row["outcome"], "8"),
            "agent": [
                {
                    "type": {"text": row["actor_role"] or "unknown"},
                    "who": {
                        "identifier": {
                            "system": f"{SYSTEM}:actor",
                            "value": row["actor_id"] or "anonymous",
                        }
                    },
                    "requestor": True,
                }
            ],
            "source": {"observer": {"display": "telemed control plane"}},
            "entity": entity or None,
        }
    )


def collection(resources: list[Resource], timestamp: datetime) -> Bundle:
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": _when(timestamp),
            "entry": [
                {
                    "fullUrl": f"urn:telemed:{r.get_resource_type()}/{r.id}",
                    "resource": r,
                }
                for r in resources
            ],
        }
    )
