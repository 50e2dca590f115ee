"""Demo consultations for trying the system locally (`telemed links`).

Goes through the real services: registers a demo physician with an active,
telemedicine-authorised licence, publishes a consent text if there is none,
records the demo patient's consent, creates and starts a session as a
coordinator, and issues each participant's room token.  Every step is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.auth import ApiClaims, TokenService
from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.consents import ConsentService, ConsentStore
from controlplane.clinical.db import create_pool
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.licences import Licence, LicenceGate, PostgresLicenceRegistry
from controlplane.clinical.lifecycle import NoLiveRooms, SessionLifecycle
from controlplane.clinical.room_tokens import RoomTokens
from controlplane.clinical.session_access import SessionAccess
from controlplane.clinical.session_store import SessionStore
from controlplane.clinical.sessions import SessionService

DEMO_SPECIALTY = "clinica-medica"
DEMO_CONSENT = (
    "Demo consent: I agree to a teleconsultation by video under LGPD; "
    "I may revoke this at any time."
)


async def create_demo_session(
    database_url: str,
    tokens: TokenService,
    cipher: FieldCipher,
    *,
    session_type: str,
    physician_id: str,
    patient_id: str,
    room_token_ttl: int,
    physician_name: str = "Dr. Demo",
    patient_name: str = "Patient",
) -> dict[str, Any]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        audit = AuditLog(pool)
        consents = ConsentStore(pool)
        registry = PostgresLicenceRegistry(pool)
        store = SessionStore(pool)
        access = SessionAccess(store, audit)
        licences = LicenceGate(registry, audit)
        sessions = SessionService(pool, store, access, audit, licences, consents, cipher)
        lifecycle = SessionLifecycle(pool, store, access, audit, licences, consents, NoLiveRooms())
        room_tokens = RoomTokens(store, audit, tokens, ttl=room_token_ttl)
        actor = Actor("cli-demo", "admin")
        await registry.register_clinician(physician_id, "123456", "SP", [DEMO_SPECIALTY])
        await registry.upsert([Licence("123456", "SP", "active", True, (DEMO_SPECIALTY,))], "demo")
        consent = ConsentService(consents, audit, lifecycle)
        texts = {t["purpose"]: t["version"] for t in await consents.texts()}
        version = texts.get("teleconsultation") or await consent.publish_text(
            actor, "teleconsultation", DEMO_CONSENT
        )
        await consent.grant(
            Actor("cli-demo", "coordinator"), patient_id, "teleconsultation", version
        )
        coordinator = ApiClaims("cli-demo", "coordinator", True, 0, "cli", clinic="clinic-demo")
        created = await sessions.create(
            coordinator,
            {
                "patientId": patient_id,
                "physicianId": physician_id,
                "sessionType": session_type,
                "specialty": DEMO_SPECIALTY,
                "scheduledFor": datetime.now(UTC),
                "estimatedDuration": 30,
                "clinicId": "clinic-demo",
                "notes": None,
                "recordingEnabled": False,
            },
        )
        await lifecycle.start(coordinator, created["sessionId"])
        issued_tokens = {}
        for role, participant, name in (
            ("physician", physician_id, physician_name),
            ("patient", patient_id, patient_name),
        ):
            claims = ApiClaims(participant, role, role == "physician", 0, "cli")
            issued = await room_tokens.issue(claims, created["sessionId"], name)
            issued_tokens[role] = issued["token"]
        return {"session": created, "tokens": issued_tokens}
    finally:
        await pool.close()
