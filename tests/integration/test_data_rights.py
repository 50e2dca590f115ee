"""The patient's data rights (issue 15): FHIR export, erasure, retention, audit search.
Real PostgreSQL, Redis, SFU node and recordings; the export is checked by the FHIR
R4 models and by what it must and must not contain."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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
    return await api.record(session_id, physician)


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
    for bad in ("%00x", "a" * 80, "..%2Fetc"):
        invalid = await api.call("GET", f"patients/{bad}/export", api.token("admin-1", "admin"))
        assert (invalid.status, invalid.code) == (400, "VALIDATION_ERROR"), bad
    nosy = await api.call("GET", f"patients/{patient}/export", api.token(other_patient, "patient"))
    assert (nosy.status, nosy.code) == (404, "NOT_FOUND")

    # `telemed export` writes the same Bundle to a file (mode 600).
    out = stack.data_dir / f"export-{patient}.json"
    done = stack.cli("export", patient, "--out", str(out))
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

        # A room token minted before the request still carries the name: it is dropped
        # when that token connects again.
        rejoined = MediaPeer(cp.url, peers[-1].token, send_audio=False, send_video=False)
        peers.append(rejoined)
        await rejoined.connect()
        joined = await rejoined.join(room)
        assert joined["displayName"] == ""
        assert await redis.hget(peer_key, "displayName") == ""

        # Asked again, five times at once: harmless.
        token = own.token(patient, "patient")
        repeats = await asyncio.gather(
            *(own.call("POST", f"patients/{patient}/erasure", token) for _ in range(5))
        )
        for again in repeats:
            assert again.status == 200, again.body
            assert again.body["repeat"] is True and again.body["erased"]["recordingIds"] == []
        assert stack.psql(f"SELECT status FROM recordings WHERE id = '{filed}'") == "completed"
        assert (
            stack.psql(f"SELECT count(*) FROM erasure_requests WHERE patient_id = '{patient}'")
            == "6"
        )
        assert audited(stack, "recording.erasure_shred", erasable) == "1"
        refused = await own.call(
            "POST", f"patients/{patient}/erasure", own.token(physician, "physician")
        )
        assert (refused.status, refused.code) == (404, "NOT_FOUND")


async def metric(http: aiohttp.ClientSession, url: str, name: str, data_class: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(f'{name}{{data_class="{data_class}"}} '):
            return float(line.split()[-1])
    return -1.0


async def test_retention_removes_only_what_is_due_and_reports_it(
    stack: Stack, api: Api, instance
) -> None:
    session, physician, _patient = await api.active_session(notes="retorno em 30 dias")
    sid = session["sessionId"]
    old = await note(api, physician, sid, "nota antiga")
    fresh = await note(api, physician, sid, "nota recente")
    kept_session, kept_physician, _ = await api.active_session(notes="nao vencida")
    # 21 years ago: past the 20-year medical-record period (the default).
    stack.psql(
        f"UPDATE clinical_records SET created_at = now() - interval '21 years' WHERE id = '{old}'"
    )
    await end(api, physician, sid)
    stack.psql(f"UPDATE sessions SET ended_at = now() - interval '21 years' WHERE id = '{sid}'")
    for age in ("2 years", "1 day"):  # alerts are kept one year
        stack.psql(
            "INSERT INTO alerts (rule, severity, room_id, session_id, participant_id, call_type,"
            f" description, raised_at) VALUES ('high_rtt', 'warning', '{session['roomId']}',"
            f" '{sid}', '{physician}', 'consultation', 'rtt', now() - interval '{age}')"
        )

    cp = instance(TELEMED_RETENTION_INTERVAL="1")
    for _ in range(40):
        if stack.psql(f"SELECT count(*) FROM clinical_records WHERE id = '{old}'") == "0":
            break
        await asyncio.sleep(0.25)
    assert stack.psql(f"SELECT count(*) FROM clinical_records WHERE id = '{old}'") == "0"
    assert stack.psql(f"SELECT count(*) FROM clinical_records WHERE id = '{fresh}'") == "1"
    assert stack.psql(f"SELECT notes_enc IS NULL FROM sessions WHERE id = '{sid}'") == "t"
    assert (
        stack.psql(
            f"SELECT notes_enc IS NULL FROM sessions WHERE id = '{kept_session['sessionId']}'"
        )
        == "f"
    )
    ages = stack.psql(
        f"SELECT string_agg((raised_at > now() - interval '1 year')::text, ',') FROM alerts "
        f"WHERE session_id = '{sid}'"
    )
    assert ages == "true"  # the old alert is gone, the recent one stays
    removed = stack.psql(
        "SELECT string_agg(resource_type || '=' || (details->>'count'), ',' ORDER BY id) "
        "FROM audit_log WHERE action = 'retention.remove' AND id > (SELECT max(id) - 50 "
        "FROM audit_log)"
    )
    assert "clinical_record=2" in removed.split(",") and "alert=1" in removed.split(",")
    assert await metric(api.http, cp.url, "telemed_retention_removed_total", "clinical_record") == 2
    assert await metric(api.http, cp.url, "telemed_retention_past_due_rows", "clinical_record") == 0
    assert await metric(api.http, cp.url, "telemed_retention_past_due_rows", "alert") == 0
    # What the job keeps is still readable by its physician.
    records = await api.call("GET", f"session/{sid}/records", api.token(physician, "physician"))
    assert [r["text"] for r in records.body["records"]] == ["nota recente"]
    await end(api, kept_physician, kept_session["sessionId"])


async def test_audit_search_filters_pages_and_exports(stack: Stack, api: Api) -> None:
    session, physician, patient = await api.active_session()
    sid = session["sessionId"]
    await note(api, physician, sid, "consulta de rotina")
    admin = api.token("admin-1", "admin")

    async def search(token: str = admin, **query: Any) -> Any:
        return await api.call("GET", f"audit?{urlencode(query)}", token)

    about = await search(subject=patient)
    assert about.status == 200, about.body
    entries = about.body["entries"]
    assert all(e["resourceId"] == patient or e["sessionId"] == sid for e in entries)
    assert {"consent.grant", "session.create", "session.start"} <= {e["action"] for e in entries}
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)

    by_actor = await search(actor=physician, action="session.*")
    assert by_actor.body["entries"]
    assert all(
        e["actorId"] == physician and e["action"].startswith("session.")
        for e in by_actor.body["entries"]
    )
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await search(subject=patient, **{"from": future})).body["entries"] == []

    # Searches about the patient are themselves entries about them: page from a fixed point.
    start = ids[0] + 1
    first = await search(subject=patient, limit=2, before=start)
    assert len(first.body["entries"]) == 2 and first.body["nextBefore"]
    second = await search(subject=patient, limit=2, before=first.body["nextBefore"])
    assert [e["id"] for e in first.body["entries"] + second.body["entries"]] == ids[:4]

    query = urlencode({"subject": patient, "format": "csv", "before": start})
    url = f"{api.url}/api/telemedicine/audit?{query}"
    async with api.http.get(url, headers={"Authorization": f"Bearer {admin}"}) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][:5] == ["id", "at", "actor_id", "actor_role", "action"]
    assert [int(r[0]) for r in rows[1:]] == ids

    fhir = await search(subject=patient, format="fhir", before=start)
    Bundle.model_validate(fhir.body)
    assert [e["resource"]["id"] for e in fhir.body["entry"]] == [f"audit-{i}" for i in ids]

    # Another clinic's admin sees none of it; a physician may not search; bad input is 400.
    other = api.token("admin-9", "admin", clinic="clinic-elsewhere")
    assert (await search(other, subject=patient)).body["entries"] == []
    refused = await search(api.token(physician, "physician"), subject=patient)
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    for bad in ({"limit": 0}, {"from": "yesterday"}, {"colour": "red"}, {"action": "x;drop"}):
        wrong = await search(**bad)
        assert (wrong.status, wrong.code) == (400, "VALIDATION_ERROR"), bad
    assert int(stack.psql("SELECT count(*) FROM audit_log WHERE action = 'audit.search'")) >= 6
