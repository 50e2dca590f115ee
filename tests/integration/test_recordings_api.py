"""Recording through the REST API (issue 12, second part): consent-gated start and
stop, the room told, the per-recording key wrapped in PostgreSQL, download with
ranges, revocation stopping it, deletion shredding the key and the file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest
import socketio

from controlplane.clinical.field_crypto import FieldCipher
from telemed_client import MediaPeer, share_screen
from tests.conftest import Stack, start_call
from tests.fault_injection import children_named
from tests.integration.api_client import Api
from tests.integration.test_recording_capture import decode_errors, probe

pytestmark = pytest.mark.integration

EBML_MAGIC = bytes.fromhex("1a45dfa3")


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def live_call(
    stack: Stack,
    api: Api,
    peers: list[MediaPeer],
    consents: tuple[str, ...],
    url: str | None = None,
    **session: str,
) -> tuple[str, str, str, MediaPeer, MediaPeer]:
    """An active session with both parties sending; (session, physician, patient, ...)."""
    physician = await api.licensed_physician()
    patient = await api.consenting_patient(consents)
    doctor_token = api.token(physician, "physician")
    created = await api.call(
        "POST", "session/create", doctor_token, api.session_body(physician, patient, **session)
    )
    assert created.status == 201, created.body
    session_id = created.body["sessionId"]
    started = await api.call("POST", "session/start", doctor_token, {"sessionId": session_id})
    assert started.status == 200, started.body
    members = []
    for subject, role in ((physician, "physician"), (patient, "patient")):
        token = await api.call("POST", f"session/{session_id}/room-token", api.token(subject, role))
        assert token.status == 200, token.body
        members.append(MediaPeer(url or stack.url, token.body["token"]))
    peers.extend(members)
    await start_call(started.body["roomId"], *members)
    return session_id, physician, patient, members[0], members[1]


async def download(
    api: Api, recording_id: str, token: str, byte_range: str | None = None, query: str = ""
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    if byte_range:
        headers["Range"] = byte_range
    async with api.http.get(
        f"{api.stack.url}/api/telemedicine/recording/{recording_id}/media{query}",
        headers=headers,
    ) as response:
        return response.status, await response.read(), dict(response.headers)


def export(stack: Stack, recording_id: str, out: Path) -> subprocess.CompletedProcess[str]:
    return stack.cli("recording", "export", recording_id, "--out", str(out))


def format_of(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["format"]


def luma_changes(original: bytes, marked: bytes, folder: Path) -> tuple[float, float]:
    """Mean absolute luma difference of the first frame between the two files: in
    the top-left 150x14 (where the watermark goes) and in a same-sized patch at
    the bottom right (re-encoding noise only)."""
    frames = []
    for name, data in (("original", original), ("marked", marked)):
        path = folder / f"{name}.mkv"
        path.write_bytes(data)
        with av.open(str(path)) as container:
            frame = next(container.decode(container.streams.video[0]))
            plane = frame.planes[0]
            frames.append((bytes(plane), plane.line_size, frame.width, frame.height))

    def patch(x: int, y: int) -> float:
        total = 0
        for row in range(y, y + 14):
            a, b = (f[0][row * f[1] + x : row * f[1] + x + 150] for f in frames)
            total += sum(abs(p - q) for p, q in zip(a, b, strict=True))
        return total / (150 * 14)

    width, height = frames[0][2], frames[0][3]
    return patch(8, 8), patch(width - 158, height - 22)


async def test_a_consented_recording_is_started_told_stored_downloaded_and_shredded(
    stack: Stack, api: Api, peers: list[MediaPeer], tmp_path: Path
) -> None:
    session_id, physician, patient, doctor, patient_peer = await live_call(
        stack, api, peers, ("teleconsultation", "recording")
    )
    doctor_token = api.token(physician, "physician")
    # Only the physician or a coordinator of the clinic may start it.
    refused = await api.call(
        "POST", "recording/start", api.token(patient, "patient"), {"sessionId": session_id}
    )
    assert (refused.status, refused.code) == (403, "FORBIDDEN")

    started = await api.call("POST", "recording/start", doctor_token, {"sessionId": session_id})
    assert started.status == 200, started.body
    recording_id = started.body["recordingId"]
    assert started.body["status"] == "recording" and len(started.body["tracks"]) == 4
    for peer in (doctor, patient_peer):
        await peer.wait_for_event("recordingStarted", lambda d: d["recordingId"] == recording_id)
    again = await api.call("POST", "recording/start", doctor_token, {"sessionId": session_id})
    assert (again.status, again.code) == (409, "CONFLICT")
    # The key is stored wrapped, never as an age identity in the clear.
    wrapped = stack.psql(
        f"SELECT encode(wrapped_key, 'escape') FROM recordings WHERE id = '{recording_id}'"
    )
    assert wrapped and "AGE-SECRET-KEY" not in wrapped

    await asyncio.sleep(4)
    stopped = await api.call("POST", "recording/stop", doctor_token, {"recordingId": recording_id})
    assert stopped.status == 200, stopped.body
    assert stopped.body["status"] == "completed" and 3.5 <= stopped.body["durationSeconds"] <= 6
    await patient_peer.wait_for_event(
        "recordingStopped", lambda d: d["recordingId"] == recording_id
    )

    # The patient may read and download their own consultation's recording.
    meta = await api.call("GET", f"recording/{recording_id}", api.token(patient, "patient"))
    assert meta.status == 200 and meta.body["sha256"] == stopped.body["sha256"]
    listed = await api.call("GET", f"session/{session_id}/recordings", doctor_token)
    assert [r["recordingId"] for r in listed.body["recordings"]] == [recording_id]
    status, media, headers = await download(api, recording_id, api.token(patient, "patient"))
    assert status == 200 and media.startswith(EBML_MAGIC) and headers["Accept-Ranges"] == "bytes"
    # Streamed as it is decrypted (no length known up front), not built in memory.
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    status, part, headers = await download(api, recording_id, doctor_token, "bytes=4-99")
    assert (status, part, headers["Content-Range"]) == (
        206,
        media[4:100],
        f"bytes 4-99/{len(media)}",
    )
    status, _, _ = await download(api, recording_id, doctor_token, f"bytes={len(media)}-")
    assert status == 416
    # A watermarked copy: the same streams, the video marked in its top-left corner.
    status, marked, _ = await download(api, recording_id, doctor_token, query="?watermark=1")
    assert status == 200 and marked.startswith(EBML_MAGIC)
    corner, elsewhere = await asyncio.to_thread(luma_changes, media, marked, tmp_path)
    assert corner > 20 and corner > 4 * elsewhere, (corner, elsewhere)
    # Another patient, and another clinic's coordinator: FORBIDDEN, audited.
    for stranger in (
        api.token("pt-someone-else", "patient"),
        api.token("coord-elsewhere", "coordinator", clinic="clinic-elsewhere"),
    ):
        for method, path in (
            ("GET", f"recording/{recording_id}"),
            ("GET", f"session/{session_id}/recordings"),
            ("DELETE", f"recording/{recording_id}"),
        ):
            refused = await api.call(method, path, stranger)
            assert (refused.status, refused.code) == (403, "FORBIDDEN"), (method, path)
        assert (await download(api, recording_id, stranger))[0] == 403
    elsewhere = api.token("coord-elsewhere", "coordinator", clinic="clinic-elsewhere")
    refused = await api.call("POST", "recording/start", elsewhere, {"sessionId": session_id})
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    unknown = await api.call("GET", f"recording/{session_id}", doctor_token)  # no such id
    assert (unknown.status, unknown.code) == (404, "NOT_FOUND")
    assert (
        stack.psql(
            "SELECT count(*) FROM audit_log WHERE outcome = 'denied' "
            "AND actor_id = 'coord-elsewhere' AND action LIKE 'recording.%'"
        )
        == "5"
    )

    # An administrator's export: a seekable file (duration in its header), 0600,
    # never over an existing file.
    exported = tmp_path / "export.mkv"
    first = await asyncio.to_thread(export, stack, recording_id, exported)
    assert first.returncode == 0, first.stderr
    assert (await asyncio.to_thread(exported.stat)).st_mode & 0o777 == 0o600
    header = await asyncio.to_thread(format_of, exported)
    assert header["nb_streams"] == 4 and 3.5 <= float(header["duration"]) <= 6
    again = await asyncio.to_thread(export, stack, recording_id, exported)
    assert again.returncode == 2 and "exists" in again.stderr

    # Delete: the wrapped key and the file go; the row stays for the audit trail.
    ciphertext_file = Path(
        stack.psql(f"SELECT segments->0->>'file' FROM recordings WHERE id = '{recording_id}'")
    )
    assert ciphertext_file.name.endswith(".mkv.age")
    assert await asyncio.to_thread(ciphertext_file.exists)
    deleted = await api.call("DELETE", f"recording/{recording_id}", doctor_token)
    assert deleted.status == 200 and deleted.body["status"] == "deleted"
    assert (
        stack.psql(f"SELECT wrapped_key IS NULL FROM recordings WHERE id = '{recording_id}'") == "t"
    )
    assert not await asyncio.to_thread(ciphertext_file.exists)
    assert (await download(api, recording_id, doctor_token))[0] == 409
    actions = stack.psql(
        "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log "
        f"WHERE resource_id = '{recording_id}' AND outcome = 'success'"
    )
    for action in (
        "recording.start",
        "recording.stop",
        "recording.read",
        "recording.download",
        "recording.delete",
    ):
        assert action in actions, actions


async def test_without_recording_consent_starting_is_refused(
    stack: Stack, api: Api, peers: list[MediaPeer]
) -> None:
    session_id, physician, *_ = await live_call(stack, api, peers, ("teleconsultation",))
    refused = await api.call(
        "POST", "recording/start", api.token(physician, "physician"), {"sessionId": session_id}
    )
    assert (refused.status, refused.code) == (403, "RECORDING_PERMISSION_DENIED")
    assert stack.psql(f"SELECT count(*) FROM recordings WHERE session_id = '{session_id}'") == "0"


async def test_revoking_recording_consent_stops_the_recording_within_two_seconds(
    stack: Stack, api: Api, peers: list[MediaPeer]
) -> None:
    session_id, physician, patient, doctor, _ = await live_call(
        stack, api, peers, ("teleconsultation", "recording")
    )
    started = await api.call(
        "POST", "recording/start", api.token(physician, "physician"), {"sessionId": session_id}
    )
    assert started.status == 200, started.body
    recording_id = started.body["recordingId"]
    await asyncio.sleep(2)
    revoked_at = time.monotonic()
    revoked = await api.call(
        "POST",
        "consent/revoke",
        api.token(patient, "patient"),
        {"patientId": patient, "purpose": "recording"},
    )
    assert revoked.status == 200, revoked.body
    stopped = await doctor.wait_for_event(
        "recordingStopped", lambda d: d["recordingId"] == recording_id, timeout=5
    )
    assert stopped["reason"] == "consent_revoked"
    assert time.monotonic() - revoked_at < 2.0
    meta = await api.call("GET", f"recording/{recording_id}", api.token(physician, "physician"))
    assert meta.body["status"] == "completed" and meta.body["stopReason"] == "consent_revoked"


async def test_retention_shreds_only_the_recordings_past_their_types_period(
    stack: Stack, api: Api, peers: list[MediaPeer], instance
) -> None:
    """Second-opinion recordings kept 3 s (a clinic's setting), consultations the
    default 20 years: only the first kind is shredded (key, file), and audited."""
    recorded = {}
    for session_type in ("second_opinion", "consultation"):
        session_id, physician, *_ = await live_call(
            stack, api, peers, ("teleconsultation", "recording"), sessionType=session_type
        )
        recorded[session_type] = await api.record(session_id, physician)

    def state(recording_id: str) -> str:
        return stack.psql(
            "SELECT status || ',' || (wrapped_key IS NULL)::text || ',' "
            "|| coalesce(segments->0->>'file', '') "
            f"FROM recordings WHERE id = '{recording_id}'"
        )

    short_file = Path(state(recorded["second_opinion"]).split(",")[2])
    assert short_file.name.endswith(".mkv.age")
    assert await asyncio.to_thread(short_file.exists)
    cp = instance(TELEMED_RECORDING_RETENTION="second_opinion=3s", TELEMED_RETENTION_INTERVAL="1")
    for _ in range(30):  # the job runs every second once the instance is up
        if not state(recorded["second_opinion"]).startswith("completed"):
            break
        await asyncio.sleep(0.5)
    assert state(recorded["second_opinion"]).split(",")[:2] == ["deleted", "true"]
    assert not await asyncio.to_thread(short_file.exists)
    assert state(recorded["consultation"]).split(",")[:2] == ["completed", "false"]
    audited = stack.psql(
        "SELECT count(*) FROM audit_log WHERE action = 'recording.retention_shred' "
        f"AND resource_id = '{recorded['second_opinion']}'"
    )
    assert audited == "1"
    cp.process.stop()


async def test_an_emergency_records_itself_where_the_clinic_asks_and_the_patient_consented(
    stack: Stack, api: Api, peers: list[MediaPeer], instance
) -> None:
    cp = instance(TELEMED_AUTO_RECORD_CLINICS="clinic-1")
    consented = await live_call(
        stack, api, peers, ("teleconsultation", "recording"), url=cp.url, sessionType="emergency"
    )
    refused = await live_call(
        stack, api, peers, ("teleconsultation",), url=cp.url, sessionType="emergency"
    )
    started = await consented[3].wait_for_event("recordingStarted", timeout=10)
    # The room hears of the recording once its row has the tracks: listed at once.
    listed = await api.call(
        "GET", f"session/{consented[0]}/recordings", api.token(consented[1], "physician")
    )
    [recording] = listed.body["recordings"]
    assert recording["recordingId"] == started["recordingId"]
    assert recording["startedBy"] == "system" and recording["status"] == "recording"
    # Both parties' microphone and camera are in it (it waited for them to settle).
    assert len(recording["tracks"]) == 4
    # No consent: nothing records, however long the call goes.
    await asyncio.sleep(3)
    none = await api.call(
        "GET", f"session/{refused[0]}/recordings", api.token(refused[1], "physician")
    )
    assert none.body["recordings"] == []
    assert not [e for e in refused[3].event_log.events if e.name == "recordingStarted"]
    stopped = await api.call(
        "POST",
        "recording/stop",
        api.token(consented[1], "physician"),
        {"recordingId": recording["recordingId"]},
    )
    assert stopped.status == 200, stopped.body


async def test_a_recorder_killed_mid_call_fails_the_recording_loudly(
    stack: Stack, api: Api, peers: list[MediaPeer]
) -> None:
    """kill -9 of the recording's ffmpeg: the recording is marked failed and
    audited, the room is told, and the clinic's staff get a critical alert."""
    staff = socketio.AsyncClient(reconnection=False)
    alerts: list[dict] = []
    staff.on("alert", alerts.append, namespace="/staff")
    await staff.connect(
        stack.url,
        namespaces=["/staff"],
        transports=["websocket"],
        auth={"token": stack.tokens.mint_api(subject="tech-rec", role="admin", clinic="clinic-1")},
    )
    try:
        session_id, physician, _, doctor, _ = await live_call(
            stack, api, peers, ("teleconsultation", "recording")
        )
        token = api.token(physician, "physician")
        before = await asyncio.to_thread(children_named, stack.sfu.proc.pid, "ffmpeg")
        started = await api.call("POST", "recording/start", token, {"sessionId": session_id})
        assert started.status == 200, started.body
        recording_id = started.body["recordingId"]
        (ffmpeg,) = await asyncio.to_thread(children_named, stack.sfu.proc.pid, "ffmpeg") - before
        os.kill(ffmpeg, signal.SIGKILL)

        told = await doctor.wait_for_event(
            "recordingStopped", lambda d: d["recordingId"] == recording_id, timeout=5
        )
        assert told["reason"] == "failed"
        meta = await api.call("GET", f"recording/{recording_id}", token)
        assert meta.body["status"] == "failed"
        for _ in range(50):
            if any(a.get("recordingId") == recording_id for a in alerts):
                break
            await asyncio.sleep(0.1)
        [alert] = [a for a in alerts if a.get("recordingId") == recording_id]
        assert (alert["rule"], alert["severity"], alert["clinicId"]) == (
            "recording_failed",
            "critical",
            "clinic-1",
        )
        audited = stack.psql(
            "SELECT count(*) FROM audit_log WHERE action = 'recording.failed' "
            f"AND resource_id = '{recording_id}'"
        )
        assert audited == "1"
        # The session can record again.
        again = await api.call("POST", "recording/start", token, {"sessionId": session_id})
        assert again.status == 200, again.body
        await asyncio.sleep(2)
        stopped = await api.call(
            "POST", "recording/stop", token, {"recordingId": again.body["recordingId"]}
        )
        assert stopped.status == 200, stopped.body
    finally:
        await staff.disconnect()


async def test_a_screen_shared_while_recording_is_in_the_downloaded_file(
    stack: Stack, api: Api, peers: list[MediaPeer], tmp_path: Path
) -> None:
    """The physician shares the screen during a recording started through the API:
    the control plane adds it (a second segment on the node); the recording's
    metadata lists both segments and five tracks, and the download is one file
    with the five streams, all decoding."""
    session_id, physician, _, doctor, _ = await live_call(
        stack, api, peers, ("teleconsultation", "recording")
    )
    token = api.token(physician, "physician")
    clock = asyncio.get_running_loop().time
    start_sent = clock()
    started = await api.call("POST", "recording/start", token, {"sessionId": session_id})
    assert started.status == 200, started.body
    start_acked = clock()
    recording_id = started.body["recordingId"]
    await asyncio.sleep(2)
    share_sent = clock()
    await share_screen(doctor)
    await asyncio.sleep(4)
    stop_sent = clock()
    stopped = await api.call("POST", "recording/stop", token, {"recordingId": recording_id})
    assert stopped.status == 200, stopped.body
    segments = stopped.body["segments"]
    assert [len(s["tracks"]) for s in segments] == [4, 5]
    # The second segment opens between the share and the stop; the first one opened
    # before the start was acknowledged.  (Bounds from what this test saw, since
    # ffmpeg's start takes a variable time on a loaded machine.)
    offset = segments[1]["offsetSeconds"]
    assert share_sent - start_acked - 0.1 <= offset <= stop_sent - start_sent, offset
    shared_for = segments[1]["durationSeconds"]
    assert shared_for >= 2, shared_for
    assert all(len(s["sha256"]) == 64 for s in segments) and stopped.body["sha256"] is None
    assert sorted(t["kind"] for t in stopped.body["tracks"]) == ["audio"] * 2 + ["video"] * 3
    assert stopped.body["bytes"] == sum(s["bytes"] for s in segments)

    status, media, _ = await download(api, recording_id, token)
    assert status == 200
    path = tmp_path / "call.mkv"
    path.write_bytes(media)
    assert decode_errors(path) == (0, "")
    info = probe(path)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio"] * 2 + ["video"] * 3
    screen = [p for p in info["packets"] if p["stream_index"] == 4]
    assert len(screen) >= 15 * shared_for * 0.7  # the screen is shared at 15 fps


def rewrap(stack: Stack, keys: str, recording_id: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("recording", "rewrap", recording_id, timeout=60, TELEMED_DATA_KEYS=keys)


async def test_a_key_rotation_keeps_recordings_readable_then_retires_the_old_key(
    stack: Stack, api: Api, peers: list[MediaPeer], instance
) -> None:
    """A recording's key is wrapped by the first of TELEMED_DATA_KEYS.  A new key
    put first: the recording still opens (the old key unwraps); `telemed recording
    rewrap` wraps it with the new key; then a control plane with only the new key
    opens it, and one with only the old key cannot (a clear CONFLICT)."""
    session_id, physician, *_ = await live_call(
        stack, api, peers, ("teleconsultation", "recording")
    )
    token = api.token(physician, "physician")
    started = await api.call("POST", "recording/start", token, {"sessionId": session_id})
    assert started.status == 200, started.body
    recording_id = started.body["recordingId"]
    await asyncio.sleep(3)
    stopped = await api.call("POST", "recording/stop", token, {"recordingId": recording_id})
    assert stopped.status == 200, stopped.body
    status, original, _ = await download(api, recording_id, token)
    assert status == 200

    old = stack.control_plane_env()["TELEMED_DATA_KEYS"]
    new = FieldCipher.generate_spec(key_id=77)

    async def fetch(url: str) -> tuple[int, bytes]:
        async with api.http.get(
            f"{url}/api/telemedicine/recording/{recording_id}/media",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            return response.status, await response.read()

    rotated = instance(TELEMED_DATA_KEYS=f"{new},{old}")
    assert await fetch(rotated.url) == (200, original)
    done = await asyncio.to_thread(rewrap, stack, f"{new},{old}", recording_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"rewrapped": 1, "checked": 1}
    key_id = stack.psql(
        f"SELECT get_byte(wrapped_key, 1) FROM recordings WHERE id = '{recording_id}'"
    )
    assert key_id == "77"
    again = await asyncio.to_thread(rewrap, stack, f"{new},{old}", recording_id)
    assert json.loads(again.stdout) == {"rewrapped": 0, "checked": 1}

    only_new = instance(TELEMED_DATA_KEYS=new)
    assert await fetch(only_new.url) == (200, original)
    status, body = await fetch(stack.url)  # the old key alone
    assert status == 409 and b"configured keys" in body
