"""Sessions API on a real PostgreSQL: lifecycle, licence and consent rules,
access control, room tokens, and what joining a room now requires."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from telemed_client import MediaPeer, SignalingError
from tests.conftest import Stack
from tests.integration.api_client import SPECIALTY, Api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack):
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def _peer(stack: Stack, api: Api, session_id: str, subject: str, role: str) -> MediaPeer:
    token = await api.call("POST", f"session/{session_id}/room-token", api.token(subject, role))
    assert token.status == 200, token.body
    peer = MediaPeer(stack.url, token.body["token"])
    await peer.connect()
    await peer.join(token.body["roomId"])
    return peer


async def test_full_lifecycle_create_start_join_end(stack: Stack, api: Api, peers) -> None:
    physician = await api.licensed_physician()
    patient = await api.consenting_patient()
    doctor = api.token(physician, "physician")

    created = await api.call(
        "POST", "session/create", doctor, api.session_body(physician, patient, notes="bring exams")
    )
    assert created.status == 201
    session = created.body
    assert session["status"] == "scheduled"
    assert session["compliance"] == {
        "licenseVerified": True,
        "consentObtained": True,
        "telemedicineCompliant": True,
    }
    assert session["recordingEnabled"] is False
    assert session["roomId"].startswith("room-")
    assert "notes" not in session  # stored encrypted, not echoed

    started = await api.call("POST", "session/start", doctor, {"sessionId": session["sessionId"]})
    assert started.status == 200 and started.body["status"] == "active"

    doctor_peer = await _peer(stack, api, session["sessionId"], physician, "physician")
    patient_peer = await _peer(stack, api, session["sessionId"], patient, "patient")
    peers.extend([doctor_peer, patient_peer])
    for peer in (doctor_peer, patient_peer):
        await peer.start_sending()
        await peer.start_receiving()
    await patient_peer.wait_for_frames(physician, "video", count=5)

    ended = await api.call("POST", "session/end", doctor, {"sessionId": session["sessionId"]})
    assert ended.status == 200
    assert ended.body["status"] == "ended" and ended.body["durationSeconds"] > 0
    for peer in (doctor_peer, patient_peer):
        told = await peer.wait_for_event("sessionEnded", timeout=10)
        assert told["reason"] == "ended"
    # The room is gone and the ended session cannot be joined or tokened again.
    again = await api.call(
        "POST", f"session/{session['sessionId']}/room-token", api.token(patient, "patient")
    )
    assert again.status == 409 and again.code == "CONFLICT"
    read = await api.call("GET", f"session/{session['sessionId']}", api.token(patient, "patient"))
    assert read.status == 200 and read.body["endReason"] == "ended"


@pytest.mark.parametrize(
    ("licence", "expected_reason"),
    [
        ({"status": "suspended"}, "suspended"),
        ({"status": "cancelled"}, "cancelled"),
        ({"telemedicine": False}, "telemedicine"),
        ({"specialty": "dermatologia"}, "specialty"),
    ],
)
async def test_create_refused_when_the_licence_does_not_allow_it(
    stack: Stack, api: Api, licence: dict, expected_reason: str
) -> None:
    physician = await api.licensed_physician(**licence)
    patient = await api.consenting_patient()
    refused = await api.call(
        "POST",
        "session/create",
        api.token(physician, "physician"),
        api.session_body(physician, patient),
    )
    assert refused.status == 403 and refused.code == "PHYSICIAN_NOT_AUTHORIZED"
    assert expected_reason in refused.body["error"]["message"]
    denied = stack.psql(
        "SELECT count(*) FROM audit_log WHERE action = 'licence.check' AND outcome = 'denied' "
        f"AND resource_id = '{physician}'"
    )
    assert int(denied) == 1


async def test_unregistered_physician_is_not_authorized(api: Api) -> None:
    patient = await api.consenting_patient()
    refused = await api.call(
        "POST",
        "session/create",
        api.token("admin-1", "admin"),
        api.session_body("dr-nobody", patient),
    )
    assert refused.code == "PHYSICIAN_NOT_AUTHORIZED"


async def test_start_refused_when_the_licence_was_suspended_meanwhile(
    stack: Stack, api: Api
) -> None:
    physician = await api.licensed_physician()
    patient = await api.consenting_patient()
    doctor = api.token(physician, "physician")
    created = await api.call("POST", "session/create", doctor, api.session_body(physician, patient))
    crm = stack.psql(f"SELECT crm FROM clinicians WHERE id = '{physician}'")
    await api.admin(
        "POST",
        "admin/licences",
        {
            "licences": [
                {
                    "crm": crm,
                    "uf": "SP",
                    "status": "suspended",
                    "telemedicineAuthorized": True,
                    "specialties": [SPECIALTY],
                }
            ]
        },
    )
    refused = await api.call(
        "POST", "session/start", doctor, {"sessionId": created.body["sessionId"]}
    )
    assert refused.code == "PHYSICIAN_NOT_AUTHORIZED"
    assert (await api.call("GET", f"session/{created.body['sessionId']}", doctor)).body[
        "status"
    ] == "scheduled"


async def test_start_without_teleconsultation_consent_is_a_compliance_violation(api: Api) -> None:
    physician = await api.licensed_physician()
    patient = await api.consenting_patient(purposes=())
    doctor = api.token(physician, "physician")
    created = await api.call("POST", "session/create", doctor, api.session_body(physician, patient))
    assert created.body["compliance"]["consentObtained"] is False
    refused = await api.call(
        "POST", "session/start", doctor, {"sessionId": created.body["sessionId"]}
    )
    assert refused.status == 409 and refused.code == "COMPLIANCE_VIOLATION"


async def test_revoking_consent_ends_the_live_session_immediately(
    stack: Stack, api: Api, peers
) -> None:
    session, physician, patient = await api.active_session()
    patient_peer = await _peer(stack, api, session["sessionId"], patient, "patient")
    peers.append(patient_peer)

    revoked = await api.call(
        "POST",
        "consent/revoke",
        api.token(patient, "patient"),
        {"patientId": patient, "purpose": "teleconsultation"},
    )
    assert revoked.status == 200 and revoked.body["revoked"] == 1
    assert revoked.body["endedSessions"] == [session["sessionId"]]
    told = await patient_peer.wait_for_event("sessionEnded", timeout=10)
    assert told["reason"] == "consent_revoked"
    history = await api.call("GET", f"consent/{patient}", api.token(patient, "patient"))
    assert [c["active"] for c in history.body["consents"]] == [False]
    assert history.body["consents"][0]["revokedAt"] is not None
    # A new session cannot start until the patient consents again.
    doctor = api.token(physician, "physician")
    created = await api.call("POST", "session/create", doctor, api.session_body(physician, patient))
    refused = await api.call(
        "POST", "session/start", doctor, {"sessionId": created.body["sessionId"]}
    )
    assert refused.code == "COMPLIANCE_VIOLATION"


async def test_role_rules(api: Api) -> None:
    session, physician, patient = await api.active_session()
    sid = session["sessionId"]
    other_physician = await api.licensed_physician()
    # A patient may not create; a physician may not create for someone else.
    body = api.session_body(physician, patient)
    assert (
        await api.call("POST", "session/create", api.token(patient, "patient"), body)
    ).code == "FORBIDDEN"
    assert (
        await api.call("POST", "session/create", api.token(other_physician, "physician"), body)
    ).code == "FORBIDDEN"
    # The patient of the session may read it but not end it.
    assert (await api.call("GET", f"session/{sid}", api.token(patient, "patient"))).status == 200
    assert (
        await api.call("POST", "session/end", api.token(patient, "patient"), {"sessionId": sid})
    ).code == "FORBIDDEN"
    # A coordinator may end it.
    ended = await api.call(
        "POST", "session/end", api.token("coord-1", "coordinator"), {"sessionId": sid}
    )
    assert ended.status == 200 and ended.body["status"] == "ended"


async def test_other_consultations_are_invisible_and_attempts_are_audited(
    stack: Stack, api: Api
) -> None:
    session_a, _physician_a, patient_a = await api.active_session()
    session_b, physician_b, _patient_b = await api.active_session()
    stranger = api.token(patient_a, "patient")
    b = session_b["sessionId"]
    missing = "00000000-0000-4000-8000-000000000000"
    for method, path, body in (
        ("GET", f"session/{b}", None),
        ("POST", f"session/{b}/room-token", None),
        ("POST", "session/end", {"sessionId": b}),
        ("GET", f"session/{b}/records", None),
        ("POST", "notes", {"sessionId": b, "text": "x"}),
    ):
        refused = await api.call(method, path, stranger, body)
        # Same answer as for a session that does not exist: existence does not leak.
        assert refused.status == 404 and refused.code == "NOT_FOUND", (path, refused.body)
    nowhere = await api.call("GET", f"session/{missing}", stranger)
    assert (
        nowhere.status == 404
        and nowhere.body == (await api.call("GET", f"session/{b}", stranger)).body
    )
    denied = int(
        stack.psql(
            f"SELECT count(*) FROM audit_log WHERE actor_id = '{patient_a}' AND outcome = 'denied' "
            f"AND session_id = '{b}'"
        )
    )
    assert denied >= 5
    # And a room token of consultation A does not open consultation B's room.
    token_a = await api.call("POST", f"session/{session_a['sessionId']}/room-token", stranger)
    peer = MediaPeer(stack.url, token_a.body["token"])
    await peer.connect()
    try:
        with pytest.raises(SignalingError) as refused_join:
            await peer.request("join", {"consultationId": session_b["roomId"]})
        assert refused_join.value.code == "FORBIDDEN"
    finally:
        await peer.close()
    assert physician_b  # (B's physician untouched)


async def test_room_token_for_someone_not_in_the_session_cannot_join(
    stack: Stack, api: Api, peers
) -> None:
    session, _physician, _patient = await api.active_session()
    forged = stack.tokens.mint(
        participant_id="pt-intruder", role="patient", room_id=session["roomId"]
    )
    peer = MediaPeer(stack.url, forged)
    peers.append(peer)
    await peer.connect()
    with pytest.raises(SignalingError) as refused:
        await peer.request("join", {"consultationId": session["roomId"]})
    assert refused.value.code == "FORBIDDEN"
    audited = stack.psql(
        "SELECT count(*) FROM audit_log WHERE action = 'room.join' AND outcome = 'denied' "
        "AND actor_id = 'pt-intruder'"
    )
    assert int(audited) == 1


async def test_api_token_rules(api: Api) -> None:
    assert (await api.call("GET", "metrics/duration", None)).code == "UNAUTHORIZED"
    assert (await api.call("GET", "metrics/duration", "garbage")).code == "UNAUTHORIZED"
    expired = api.token("coord-1", "coordinator", now=int(time.time()) - 7200, ttl=60)
    response = await api.call("GET", "metrics/duration", expired)
    assert response.status == 401 and response.code == "SESSION_EXPIRED"
    no_mfa = api.token("dr-x", "physician", mfa=False)
    assert (await api.call("GET", "metrics/duration", no_mfa)).code == "FORBIDDEN"
    # A room token is not an API token (different audience).
    room = api.stack.tokens.mint(participant_id="coord-1", role="coordinator", room_id="c-1")
    assert (await api.call("GET", "metrics/duration", room)).code == "UNAUTHORIZED"


async def test_bad_bodies_get_validation_errors_and_no_traces(api: Api) -> None:
    admin = api.token("admin-1", "admin")
    cases = [
        ("POST", "session/create", {"patientId": "p"}),
        ("POST", "session/create", {**api.session_body("dr-x", "pt-x"), "sessionType": "karaoke"}),
        (
            "POST",
            "session/create",
            {**api.session_body("dr-x", "pt-x"), "scheduledFor": "tomorrow"},
        ),
        ("POST", "session/start", {"sessionId": "not-a-uuid"}),
        ("POST", "admin/clinicians", {"id": "dr-x", "crm": "12a45", "uf": "SP"}),
        ("POST", "admin/clinicians", {"id": "dr-x", "crm": "1234", "uf": "XX"}),
        ("POST", "consent", {"patientId": "pt-x", "purpose": "marketing", "version": 1}),
    ]
    for method, path, body in cases:
        response = await api.call(method, path, admin, body)
        assert response.status == 400 and response.code == "VALIDATION_ERROR", (path, response.body)
        assert "Traceback" not in str(response.body)
    async with api.http.post(
        f"{api.stack.url}/api/telemedicine/session/create",
        data="{not json",
        headers={"Authorization": f"Bearer {admin}"},
    ) as raw:
        assert raw.status == 400 and (await raw.json())["error"]["code"] == "VALIDATION_ERROR"


async def test_duration_metrics(api: Api) -> None:
    session, physician, _patient = await api.active_session(sessionType="follow_up")
    await asyncio.sleep(0.2)
    await api.call(
        "POST",
        "session/end",
        api.token(physician, "physician"),
        {"sessionId": session["sessionId"]},
    )
    stats = await api.call(
        "GET", "metrics/duration?sessionType=follow_up", api.token("coord-1", "coordinator")
    )
    assert stats.status == 200 and stats.body["unit"] == "seconds"
    follow = stats.body["bySessionType"]["follow_up"]
    assert follow["count"] >= 1 and follow["max"] >= 0.2 and follow["p50"] <= follow["max"]
    assert (
        await api.call("GET", "metrics/duration", api.token(physician, "physician"))
    ).code == "FORBIDDEN"


async def test_openapi_document_comes_from_the_schemas(api: Api) -> None:
    document = await api.call("GET", "openapi.json", None)
    assert document.status == 200 and document.body["openapi"].startswith("3.")
    create = document.body["paths"]["/api/telemedicine/session/create"]["post"]
    schema_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document.body["components"]["schemas"][schema_ref.split("/")[-1]]
    assert set(schema["required"]) >= {
        "patientId",
        "physicianId",
        "sessionType",
        "specialty",
        "scheduledFor",
        "estimatedDuration",
        "clinicId",
    }
    assert "consultation" in schema["properties"]["sessionType"]["enum"]
    for path in (
        "session/start",
        "session/end",
        "notes",
        "prescription",
        "followup",
        "health/compliance",
        "metrics/duration",
    ):
        assert f"/api/telemedicine/{path}" in document.body["paths"]


async def test_room_token_carries_the_display_name_the_participant_chose(
    stack: Stack, api: Api, peers
) -> None:
    session, physician, patient = await api.active_session()
    issued = await api.call(
        "POST",
        f"session/{session['sessionId']}/room-token",
        api.token(patient, "patient"),
        {"displayName": "Maria"},
    )
    assert issued.status == 200
    claims = stack.tokens.verify(issued.body["token"])
    assert (claims.display_name, claims.role, claims.room_id) == (
        "Maria",
        "patient",
        session["roomId"],
    )
    too_long = await api.call(
        "POST",
        f"session/{session['sessionId']}/room-token",
        api.token(patient, "patient"),
        {"displayName": "x" * 200},
    )
    assert too_long.code == "VALIDATION_ERROR"
    # The physician's page shows the name the patient chose.
    doctor = await _peer(stack, api, session["sessionId"], physician, "physician")
    peers.append(doctor)
    patient_peer = MediaPeer(stack.url, issued.body["token"])
    peers.append(patient_peer)
    await patient_peer.connect()
    await patient_peer.join(session["roomId"])
    joined = await doctor.wait_for_event("peerJoined", lambda d: d["peerId"] == patient)
    assert joined["displayName"] == "Maria" and joined["role"] == "patient"


async def test_staff_see_and_act_on_their_own_clinic_only(api: Api) -> None:
    """A coordinator or admin token names its clinic; another clinic's sessions
    are invisible (NOT_FOUND, audited), cannot be created, started or ended by
    them, and stay out of their duration figures."""
    session, _physician, _patient = await api.active_session()
    sid = session["sessionId"]
    other = {
        role: api.token(f"{role}-x", role, clinic="clinic-2") for role in ("coordinator", "admin")
    }
    own = api.token("coord-own", "coordinator")

    for token in other.values():
        read = await api.call("GET", f"session/{sid}", token)
        assert (read.status, read.code) == (404, "NOT_FOUND")
        quality = await api.call("GET", f"metrics/quality?sessionId={sid}", token)
        assert quality.code == "NOT_FOUND"
    ended = await api.call("POST", "session/end", other["coordinator"], {"sessionId": sid})
    assert ended.code == "NOT_FOUND"
    assert (await api.call("GET", f"session/{sid}", own)).status == 200
    audited = api.stack.psql(
        "SELECT count(*) FROM audit_log WHERE actor_id = 'coordinator-x' "
        f"AND outcome = 'denied' AND session_id = '{sid}'"
    )
    assert int(audited) >= 2

    physician = await api.licensed_physician()
    patient = await api.consenting_patient()
    body = api.session_body(physician, patient)  # for clinic-1
    refused = await api.call("POST", "session/create", other["coordinator"], body)
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    made = await api.call(
        "POST", "session/create", other["coordinator"], {**body, "clinicId": "clinic-2"}
    )
    assert made.status == 201, made.body

    # A staff token that names no clinic is refused outright.
    bare = api.stack.tokens.mint_api(subject="coord-bare", role="coordinator")
    response = await api.call("GET", f"session/{sid}", bare)
    assert (response.status, response.code) == (403, "FORBIDDEN")

    assert (await api.call("POST", "session/end", own, {"sessionId": sid})).status == 200
    mine = await api.call("GET", "metrics/duration", own)
    theirs = await api.call("GET", "metrics/duration", other["coordinator"])
    assert mine.body["overall"]["count"] >= 1
    assert theirs.body["overall"]["count"] == 0
