"""The patient's data rights (issue 15): FHIR export, erasure, retention, audit search.
Real PostgreSQL, Redis, SFU node and recordings; the export is checked by the FHIR
R4 models and by what it must and must not contain."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from fhir.resources.R4B.bundle import Bundle

from telemed_client import MediaPeer
from tests.conftest import Stack, start_call
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


def cli(stack: Stack, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *command],
        env={**os.environ, **stack.control_plane_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def session_for(
    api: Api, physician: str, patient: str, session_type: str = "consultation"
) -> str:
    token = api.token(physician, "physician")
    created = await api.call(
        "POST",
        "session/create",
        token,
        api.session_body(physician, patient, sessionType=session_type),
    )
    assert created.status == 201, created.body
    started = await api.call(
        "POST", "session/start", token, {"sessionId": created.body["sessionId"]}
    )
    assert started.status == 200, started.body
    return str(created.body["sessionId"])


async def end(api: Api, physician: str, session_id: str) -> None:
    ended = await api.call(
        "POST", "session/end", api.token(physician, "physician"), {"sessionId": session_id}
    )
    assert ended.status == 200, ended.body


async def note(api: Api, physician: str, session_id: str, text: str, kind: str = "notes") -> str:
    written = await api.call(
        "POST", kind, api.token(physician, "physician"), {"sessionId": session_id, "text": text}
    )
    assert written.status == 201, written.body
    return str(written.body["id"])


async def recorded_call(
    stack: Stack, api: Api, peers: list[MediaPeer], physician: str, patient: str, session_id: str
) -> str:
    """Both parties in the room (the patient under a display name), two seconds recorded."""
    members = []
    for subject, role, name in (
        (physician, "physician", "Dr Ana"),
        (patient, "patient", "Maria Souza"),
    ):
        token = await api.call(
            "POST",
            f"session/{session_id}/room-token",
            api.token(subject, role),
            {"displayName": name},
        )
        assert token.status == 200, token.body
        members.append(MediaPeer(api.url, token.body["token"]))
    peers.extend(members)
    room = stack.psql(f"SELECT room_id FROM sessions WHERE id = '{session_id}'")
    await start_call(room, *members)
    doctor = api.token(physician, "physician")
    started = await api.call("POST", "recording/start", doctor, {"sessionId": session_id})
    assert started.status == 200, started.body
    await asyncio.sleep(2)
    recording_id = started.body["recordingId"]
    stopped = await api.call("POST", "recording/stop", doctor, {"recordingId": recording_id})
    assert stopped.status == 200, stopped.body
    return str(recording_id)


def recording_state(stack: Stack, recording_id: str) -> str:
    return stack.psql(
        "SELECT status || ',' || (wrapped_key IS NULL)::text FROM recordings "
        f"WHERE id = '{recording_id}'"
    )


def audited(stack: Stack, action: str, resource_id: str) -> str:
    return stack.psql(
        f"SELECT count(*) FROM audit_log WHERE action = '{action}' "
        f"AND resource_id = '{resource_id}'"
    )


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def test_export_is_valid_fhir_r4_with_exactly_the_patients_data(
    stack: Stack, api: Api, peers: list[MediaPeer]
) -> None:
    physician = await api.licensed_physician()
    patient = await api.consenting_patient(("teleconsultation", "recording"))
    revoked = await api.call(
        "POST",
        "consent/revoke",
        api.token(patient, "patient"),
        {"patientId": patient, "purpose": "recording"},
    )
    assert revoked.status == 200, revoked.body
    await api.call(
        "POST",
        "consent",
        api.token(patient, "patient"),
        {
            "patientId": patient,
            "purpose": "recording",
            "version": await api.consent_version("recording"),
        },
    )
    first = await session_for(api, physician, patient)
    recording = await recorded_call(stack, api, peers, physician, patient, first)
    note_id = await note(api, physician, first, "dor toracica ha 2 dias")
    await end(api, physician, first)
    second = await session_for(api, physician, patient, "follow_up")
    prescription = await note(api, physician, second, "dipirona 500 mg", "prescription")
    # Another patient of the same clinic and physician: none of this may appear.
    other_patient = await api.consenting_patient()
    other = await session_for(api, physician, other_patient)
    await note(api, physician, other, "texto de outro paciente")

    response = await api.call("GET", f"patients/{patient}/export", api.token(patient, "patient"))
    assert response.status == 200, response.body
    bundle = response.body
    Bundle.model_validate(bundle)  # FHIR R4 (R4B models): raises on anything invalid
    assert bundle["type"] == "collection"
    text = json.dumps(bundle)
    assert other not in text and other_patient not in text
    assert base64.b64encode(b"texto de outro paciente").decode() not in text

    (person,) = of_type(bundle, "Patient")
    assert person["identifier"][0]["value"] == patient
    encounters = {e["id"]: e for e in of_type(bundle, "Encounter")}
    assert set(encounters) == {first, second}
    assert encounters[first]["status"] == "finished" and "end" in encounters[first]["period"]
    assert encounters[second]["status"] == "in-progress"
    assert encounters[second]["type"][0]["text"] == "follow_up"
    roles = {
        p["individual"]["identifier"]["value"]: p["type"][0]["text"]
        for p in encounters[first]["participant"]
    }
    assert roles == {physician: "physician", patient: "patient"}

    consents = of_type(bundle, "Consent")
    purposes = sorted((c["provision"]["purpose"][0]["code"], c["status"]) for c in consents)
    assert purposes == [
        ("recording", "active"),
        ("recording", "inactive"),
        ("teleconsultation", "active"),
    ]
    assert all(c["policy"][0]["uri"].startswith("urn:telemed:consent-text:") for c in consents)

    documents = {d["id"]: d for d in of_type(bundle, "DocumentReference")}
    assert set(documents) == {note_id, prescription}
    attached = base64.b64decode(documents[note_id]["content"][0]["attachment"]["data"]).decode()
    assert attached == "dor toracica ha 2 dias"
    assert documents[prescription]["context"]["encounter"][0]["reference"] == f"Encounter/{second}"

    (media,) = of_type(bundle, "Media")
    assert media["id"] == recording
    assert media["content"]["url"].endswith(f"/api/telemedicine/recording/{recording}/media")

    actions = {a["type"]["code"] for a in of_type(bundle, "AuditEvent")}
    assert {"consent.grant", "consent.revoke", "session.start", "recording.start"} <= actions
    assert audited(stack, "patient.export", patient) == "1"

    # The clinic's admin may export; an admin of another clinic, or another patient, may not.
    assert (
        await api.call("GET", f"patients/{patient}/export", api.token("admin-1", "admin"))
    ).status == 200
    elsewhere = await api.call(
        "GET",
        f"patients/{patient}/export",
        api.token("admin-9", "admin", clinic="clinic-elsewhere"),
    )
    assert (elsewhere.status, elsewhere.code) == (404, "NOT_FOUND")
    nosy = await api.call("GET", f"patients/{patient}/export", api.token(other_patient, "patient"))
    assert (nosy.status, nosy.code) == (404, "NOT_FOUND")

    # `telemed export` writes the same Bundle to a file (mode 600).
    out = stack.data_dir / f"export-{patient}.json"
    done = cli(stack, "export", patient, "--out", str(out))
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    Bundle.model_validate(written)
    assert {e["id"] for e in of_type(written, "Encounter")} == {first, second}
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    out.unlink()


async def test_erasure_removes_what_it_says_keeps_what_it_says_and_repeats_harmlessly(
    stack: Stack, api: Api, peers: list[MediaPeer], instance, redis: aioredis.Redis
) -> None:
    # A clinic that does not file second-opinion recordings in the medical record.
    cp = instance(TELEMED_RECORDING_RETENTION="second_opinion=30d")
    async with aiohttp.ClientSession() as http:
        own = Api(stack, http, cp.url)
        physician = await own.licensed_physician()
        patient = await own.consenting_patient(("teleconsultation", "recording"))
        opinion = await session_for(own, physician, patient, "second_opinion")
        erasable = await recorded_call(stack, own, peers, physician, patient, opinion)
        await end(own, physician, opinion)
        visit = await session_for(own, physician, patient)
        filed = await recorded_call(stack, own, peers, physician, patient, visit)
        await note(own, physician, visit, "hipertensao controlada")
        room = stack.psql(f"SELECT room_id FROM sessions WHERE id = '{visit}'")
        peer_key = f"telemed:room:{{{room}}}:peer:{patient}"
        assert await redis.hget(peer_key, "displayName") == "Maria Souza"
        for who in (patient, physician):
            stack.psql(
                "INSERT INTO alerts (rule, severity, room_id, session_id, participant_id,"
                " call_type, description) VALUES ('high_rtt', 'warning',"
                f" '{room}', '{visit}', '{who}', 'consultation', 'rtt above 500 ms')"
            )
        erasable_file = Path(
            stack.psql(f"SELECT segments->0->>'file' FROM recordings WHERE id = '{erasable}'")
        )
        assert await asyncio.to_thread(erasable_file.exists)

        response = await own.call(
            "POST", f"patients/{patient}/erasure", own.token(patient, "patient")
        )
        assert response.status == 200, response.body
        body = response.body
        assert body["repeat"] is False
        assert body["erased"]["recordingIds"] == [erasable]
        assert body["erased"]["alerts"] == 1 and body["erased"]["liveState"] >= 1
        kept = {k["dataClass"]: k for k in body["kept"]}
        assert kept["clinical_record"]["count"] >= 1
        assert kept["clinical_record"]["until"][:4] == str(datetime.now(UTC).year + 20)
        assert (
            kept["recording"]["count"] == 1
            and "Resolution 2.314/2022" in kept["recording"]["basis"]
        )
        assert {"consent", "audit"} <= set(kept)

        # What it says it erased is gone ...
        assert recording_state(stack, erasable) == "deleted,true"
        assert not await asyncio.to_thread(erasable_file.exists)
        assert await redis.hget(peer_key, "displayName") == ""
        assert (
            await redis.hget(f"telemed:room:{{{room}}}:peer:{physician}", "displayName") == "Dr Ana"
        )
        assert stack.psql(f"SELECT count(*) FROM alerts WHERE session_id = '{visit}'") == "1"
        # ... what it says it kept is there and still readable.
        assert recording_state(stack, filed) == "completed,false"
        records = await own.call(
            "GET", f"session/{visit}/records", own.token(physician, "physician")
        )
        assert [r["text"] for r in records.body["records"]] == ["hipertensao controlada"]
        # Audited with counts only: the erased name is nowhere in the audit trail.
        assert (
            stack.psql("SELECT count(*) FROM audit_log WHERE details::text LIKE '%Maria%'") == "0"
        )
        assert audited(stack, "patient.erasure", patient) == "1"
        # The call goes on: the patient still decodes the physician's video.
        track = peers[-1].tracks_from(physician, "video")[0]
        before = track.frames
        await peers[-1].wait_for_frames(physician, "video", count=before + 10, timeout=10)

        again = await own.call("POST", f"patients/{patient}/erasure", own.token(patient, "patient"))
        assert again.status == 200, again.body
        assert again.body["repeat"] is True and again.body["erased"]["recordingIds"] == []
        assert stack.psql(f"SELECT status FROM recordings WHERE id = '{filed}'") == "completed"
        assert (
            stack.psql(f"SELECT count(*) FROM erasure_requests WHERE patient_id = '{patient}'")
            == "2"
        )
        refused = await own.call(
            "POST", f"patients/{patient}/erasure", own.token(physician, "physician")
        )
        assert (refused.status, refused.code) == (404, "NOT_FOUND")
