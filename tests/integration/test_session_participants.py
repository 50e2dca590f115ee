"""A session's participants through the REST API (issue 13): clinicians added
with a licence check and a limit per call type, a companion only with the
patient's consent, invitees' room tokens, what a companion may not do, removal
that puts someone out of the live room for good; all audited."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack
from tests.integration.api_client import Api
from tests.integration.test_waiting_room import join_refusal, put_out

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def test_clinicians_interpreters_and_companions_are_added_by_the_rules(
    stack: Stack, api: Api
) -> None:
    session, physician, patient = await api.active_session()
    session_id = session["sessionId"]
    doctor = api.token(physician, "physician")
    path = f"session/{session_id}/participants"

    nurse = await api.licensed_physician()  # any licensed clinician of the registry
    added = await api.call("POST", path, doctor, {"participantId": nurse, "role": "nurse"})
    assert added.status == 201, added.body
    assert added.body["role"] == "nurse" and added.body["roomToken"] is None
    unlicensed = await api.licensed_physician(status="suspended")
    refused = await api.call(
        "POST", path, doctor, {"participantId": unlicensed, "role": "specialist"}
    )
    assert (refused.status, refused.code) == (403, "PHYSICIAN_NOT_AUTHORIZED")
    # A consultation takes 3 clinicians: the physician, the nurse, one more.
    third = await api.licensed_physician()
    assert (
        await api.call("POST", path, doctor, {"participantId": third, "role": "specialist"})
    ).status == 201
    fourth = await api.licensed_physician()
    full = await api.call("POST", path, doctor, {"participantId": fourth, "role": "nurse"})
    assert (full.status, full.code) == (409, "CONFLICT")

    refused = await api.call(
        "POST", path, doctor, {"participantId": "mother-1", "role": "companion"}
    )
    assert (refused.status, refused.code) == (409, "COMPLIANCE_VIOLATION")
    version = await api.consent_version("companion")
    granted = await api.call(
        "POST",
        "consent",
        api.token(patient, "patient"),
        {"patientId": patient, "purpose": "companion", "version": version},
    )
    assert granted.status == 201, granted.body
    companion = await api.call(
        "POST",
        path,
        doctor,
        {"participantId": "mother-1", "role": "companion", "displayName": "Mãe"},
    )
    assert companion.status == 201, companion.body
    assert companion.body["roomToken"]["roomId"] == session["roomId"]
    claims = stack.tokens.verify(companion.body["roomToken"]["token"])
    assert (claims.role, claims.participant_id) == ("companion", "mother-1")

    # The patient may not add anyone; a companion may not end or record.
    refused = await api.call(
        "POST", path, api.token(patient, "patient"), {"participantId": "x-1", "role": "interpreter"}
    )
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    as_companion = api.token("mother-1", "companion")
    for method, where, body in (
        ("POST", "session/end", {"sessionId": session_id}),
        ("POST", "recording/start", {"sessionId": session_id}),
    ):
        refused = await api.call(method, where, as_companion, body)
        assert (refused.status, refused.code) == (403, "FORBIDDEN"), (where, refused.body)
    listed = await api.call("GET", path, as_companion)
    assert {(p["participantId"], p["role"]) for p in listed.body["participants"]} == {
        (physician, "physician"),
        (patient, "patient"),
        (nurse, "nurse"),
        (third, "specialist"),
        ("mother-1", "companion"),
    }
    actions = stack.psql(
        "SELECT string_agg(details->>'role', ',' ORDER BY id) FROM audit_log "
        f"WHERE session_id = '{session_id}' AND action = 'participant.add' AND outcome = 'success'"
    )
    assert actions == "nurse,specialist,companion"


async def test_an_emergency_takes_eight_clinicians(stack: Stack, api: Api) -> None:
    session, physician, _ = await api.active_session(sessionType="emergency")
    path = f"session/{session['sessionId']}/participants"
    doctor = api.token(physician, "physician")
    for _ in range(7):
        clinician = await api.licensed_physician()
        added = await api.call("POST", path, doctor, {"participantId": clinician, "role": "nurse"})
        assert added.status == 201, added.body
    ninth = await api.licensed_physician()
    full = await api.call("POST", path, doctor, {"participantId": ninth, "role": "nurse"})
    assert (full.status, full.code) == (409, "CONFLICT")


async def test_a_removed_participant_is_put_out_of_the_room_and_stays_out(
    stack: Stack, api: Api, peers: list[MediaPeer], redis
) -> None:
    session, physician, _ = await api.active_session()
    path = f"session/{session['sessionId']}/participants"
    doctor = api.token(physician, "physician")
    added = await api.call(
        "POST", path, doctor, {"participantId": "interp-1", "role": "interpreter"}
    )
    assert added.status == 201, added.body
    token = added.body["roomToken"]["token"]
    interpreter = MediaPeer(stack.url, token)
    peers.append(interpreter)
    await interpreter.connect()
    joined = await interpreter.join(session["roomId"])
    assert joined["admission"]["state"] == "waiting"  # interpreters always wait

    removed = await api.call("DELETE", f"{path}/interp-1", doctor)
    assert removed.status == 200 and removed.body["wasInRoom"] is True
    await interpreter.wait_for_event("admission", lambda d: d["state"] == "removed")
    await put_out(interpreter)
    assert await join_refusal(stack.url, token, session["roomId"], peers) == "FORBIDDEN"
    gone = await api.call("DELETE", f"{path}/interp-1", doctor)
    assert (gone.status, gone.code) == (404, "NOT_FOUND")
    kept = await api.call("DELETE", f"{path}/{physician}", doctor)
    assert (kept.status, kept.code) == (409, "CONFLICT")

    # The ban lives in the waiting room's keys; they go when the session ends.
    admission = f"telemed:room:{{{session['roomId']}}}:admission"
    assert await redis.exists(admission)
    ended = await api.call("POST", "session/end", doctor, {"sessionId": session["sessionId"]})
    assert ended.status == 200, ended.body
    assert not await redis.exists(admission)
