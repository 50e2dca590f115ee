"""Schemas of the REST API bodies and answers (also the source of the OpenAPI document)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from controlplane.clinical.consents import PURPOSES
from controlplane.clinical.licences import UFS
from controlplane.clinical.session_types import SESSION_TYPES
from schemas.ids import ID_PATTERN

_ID = validate.Regexp(ID_PATTERN, error="invalid id")
_TEXT = validate.Length(min=1, max=20000)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class SessionCreateSchema(_Strict):
    patientId = fields.String(required=True, validate=_ID)
    physicianId = fields.String(required=True, validate=_ID)
    sessionType = fields.String(required=True, validate=validate.OneOf(SESSION_TYPES))
    specialty = fields.String(required=True, validate=validate.Length(min=2, max=80))
    scheduledFor = fields.AwareDateTime(required=True)
    estimatedDuration = fields.Integer(
        required=True, validate=validate.Range(min=5, max=480), metadata={"description": "minutes"}
    )
    clinicId = fields.String(required=True, validate=_ID)
    notes = fields.String(
        validate=validate.Length(max=4000),
        load_default=None,
        metadata={"description": "stored encrypted"},
    )
    recordingEnabled = fields.Boolean(load_default=False)


class SessionIdSchema(_Strict):
    sessionId = fields.UUID(required=True)


class SessionEndSchema(_Strict):
    sessionId = fields.UUID(required=True)
    reason = fields.String(
        load_default="ended",
        validate=validate.OneOf(
            ("ended", "completed", "cancelled", "no_show", "technical_failure")
        ),
    )


class ComplianceSchema(Schema):
    licenseVerified = fields.Boolean()
    telemedicineCompliant = fields.Boolean()
    consentObtained = fields.Boolean()


class SessionSchema(Schema):
    sessionId = fields.UUID()
    roomId = fields.String()
    patientId = fields.String()
    physicianId = fields.String()
    sessionType = fields.String()
    specialty = fields.String()
    clinicId = fields.String()
    scheduledFor = fields.String()
    estimatedDuration = fields.Integer()
    status = fields.String(validate=validate.OneOf(("scheduled", "active", "ended", "cancelled")))
    startedAt = fields.String(allow_none=True)
    endedAt = fields.String(allow_none=True)
    endReason = fields.String(allow_none=True)
    durationSeconds = fields.Float(allow_none=True)
    recordingEnabled = fields.Boolean()
    compliance = fields.Nested(ComplianceSchema)
    classification = fields.String()


class RoomTokenRequestSchema(_Strict):
    # How the participant is shown to the others in the room (their choice; not stored).
    displayName = fields.String(load_default="", validate=validate.Length(max=80))


class RoomTokenSchema(Schema):
    roomId = fields.String()
    token = fields.String()
    expiresIn = fields.Integer()


class ClinicalTextSchema(_Strict):
    sessionId = fields.UUID(required=True)
    text = fields.String(required=True, validate=_TEXT)


class FollowupSchema(_Strict):
    sessionId = fields.UUID(required=True)
    text = fields.String(required=True, validate=_TEXT)
    dueAt = fields.AwareDateTime(required=True)


class ClinicalRecordSchema(Schema):
    id = fields.UUID()
    sessionId = fields.UUID()
    kind = fields.String()
    classification = fields.String()


class ConsentTextCreateSchema(_Strict):
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    text = fields.String(required=True, validate=_TEXT)


class ConsentGrantSchema(_Strict):
    patientId = fields.String(required=True, validate=_ID)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    version = fields.Integer(required=True, validate=validate.Range(min=1))


class ConsentRevokeSchema(_Strict):
    patientId = fields.String(required=True, validate=_ID)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))


class ClinicianSchema(_Strict):
    id = fields.String(required=True, validate=_ID)
    crm = fields.String(
        required=True, validate=validate.Regexp(r"^[0-9]{1,7}$", error="invalid CRM")
    )
    uf = fields.String(required=True, validate=validate.OneOf(sorted(UFS)))
    specialties = fields.List(
        fields.String(validate=validate.Length(min=2, max=80)),
        load_default=list,
        validate=validate.Length(max=20),
    )


class LicenceSchema(_Strict):
    crm = fields.String(
        required=True, validate=validate.Regexp(r"^[0-9]{1,7}$", error="invalid CRM")
    )
    uf = fields.String(required=True, validate=validate.OneOf(sorted(UFS)))
    status = fields.String(
        required=True, validate=validate.OneOf(("active", "suspended", "cancelled"))
    )
    telemedicineAuthorized = fields.Boolean(required=True)
    specialties = fields.List(
        fields.String(validate=validate.Length(min=2, max=80)),
        load_default=list,
        validate=validate.Length(max=20),
    )


class LicenceLoadSchema(_Strict):
    licences = fields.List(
        fields.Nested(LicenceSchema), required=True, validate=validate.Length(min=1, max=10000)
    )
    source = fields.String(load_default="admin-api", validate=validate.Length(max=40))


class RecordingIdSchema(_Strict):
    recordingId = fields.UUID(required=True)


class RecordingSchema(Schema):
    recordingId = fields.UUID()
    sessionId = fields.UUID()
    status = fields.String()  # recording, completed, failed, deleted
    startedBy = fields.String()
    startedAt = fields.String()
    stoppedAt = fields.String(allow_none=True)
    durationSeconds = fields.Float(allow_none=True)
    bytes = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True)
    tracks = fields.List(fields.Dict())
    stopReason = fields.String(allow_none=True)
    segments = fields.List(fields.Dict())


ADDABLE_ROLES = ("physician", "nurse", "specialist", "interpreter", "companion")


class ParticipantAddSchema(_Strict):
    participantId = fields.String(required=True, validate=_ID)
    role = fields.String(required=True, validate=validate.OneOf(ADDABLE_ROLES))
    # How an invited interpreter or companion is shown in the room (not stored).
    displayName = fields.String(load_default="", validate=validate.Length(max=80))


class ParticipantSchema(Schema):
    participantId = fields.String()
    role = fields.String()
    addedBy = fields.String(allow_none=True)
    addedAt = fields.String()


class ParticipantAddedSchema(ParticipantSchema):
    # For an interpreter or companion (no account of their own): their room token.
    roomToken = fields.Nested(RoomTokenSchema, allow_none=True)


class ParticipantListSchema(Schema):
    participants = fields.List(fields.Nested(ParticipantSchema))


class AuditQuerySchema(_Strict):
    """Query string of ``GET audit``."""

    subject = fields.String(validate=_ID)
    actor = fields.String(validate=_ID)
    action = fields.String(validate=validate.Regexp(r"^[a-z_]+(\.[a-z_]+)*(\.?\*)?$"))
    since = fields.AwareDateTime(data_key="from")
    until = fields.AwareDateTime(data_key="to")
    before = fields.Integer(validate=validate.Range(min=1, max=2**62))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "fhir")))
