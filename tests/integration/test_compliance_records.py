"""Audit trail (hash chain, append-only for the app role), clinical text
encrypted at rest, data classification on every record, migrations."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
import pytest

from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.db import create_pool, migrate
from controlplane.clinical.field_crypto import DecryptionError, FieldCipher
from tests.conftest import Stack
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack):
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def _chain(api: Api) -> dict:
    response = await api.call("GET", "health/compliance", None)
    return {**response.body, "http": response.status}


def verify_chain(stack: Stack, *options: str) -> tuple[int, dict]:
    """`telemed audit verify` (a full walk unless --incremental): exit code, result."""
    done = stack.cli("audit", "verify", *options)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_audit_chain_is_ok_and_covers_the_session_story(stack: Stack, api: Api) -> None:
    session, _physician, _patient = await api.active_session()
    chain = await _chain(api)
    assert chain["http"] == 200 and chain["auditChain"]["status"] == "ok"
    actions = stack.psql(
        "SELECT string_agg(DISTINCT action, ',') FROM audit_log "
        f"WHERE session_id = '{session['sessionId']}'"
    ).split(",")
    assert {"session.create", "session.start"} <= set(actions)
    published = await api.admin(
        "POST",
        "consent/texts",
        {"purpose": "data_sharing", "text": "Sharing with the clinic (v-next)."},
    )
    assert published.status == 201
    assert {"consent.grant", "licence.load", "clinician.upsert", "consent_text.publish"} <= set(
        stack.psql("SELECT string_agg(DISTINCT action, ',') FROM audit_log").split(",")
    )


async def test_a_burst_of_entries_is_committed_in_chain_order_on_a_small_pool(
    stack: Stack,
) -> None:
    """300 entries recorded at once on a pool of 2 connections: each caller gets its
    own id once committed, the ids follow one another in the chain, the chain
    verifies, and an entry whose caller was cancelled is still written."""
    pool = await create_pool(stack.database_url, max_size=2)
    try:
        audit = AuditLog(pool)
        actor = Actor("burst-tester", "system")
        marker = f"burst-{id(audit)}"

        def one(n: int) -> asyncio.Task[int]:
            return asyncio.create_task(
                audit.record(actor, "test.burst", resource_id=marker, details={"n": n})
            )

        tasks = [one(n) for n in range(300)]
        abandoned = one(300)
        await asyncio.sleep(0)
        abandoned.cancel()
        ids = await asyncio.gather(*tasks)
        assert len(set(ids)) == 300
        for _ in range(50):
            stored = stack.psql(
                "SELECT count(*), count(DISTINCT details->>'n') FROM audit_log "
                f"WHERE resource_id = '{marker}'"
            )
            if stored == "301|301":
                break
            await asyncio.sleep(0.1)
        assert stored == "301|301"  # the cancelled caller's entry too
        # In the order recorded: the n-th caller's entry precedes the (n+1)-th's.
        by_id = stack.psql(
            "SELECT string_agg(details->>'n', ',' ORDER BY id) FROM audit_log "
            f"WHERE resource_id = '{marker}'"
        )
        assert by_id == ",".join(str(n) for n in range(301))
    finally:
        await pool.close()
    code, result = verify_chain(stack)
    assert code == 0 and result["status"] == "ok", result


async def test_tampering_with_an_entry_is_detected(stack: Stack, api: Api) -> None:
    await api.active_session()
    victim = stack.psql("SELECT max(id) - 3 FROM audit_log")
    original = stack.psql(f"SELECT details::text FROM audit_log WHERE id = {victim}")
    # Only a database owner can do this, and only by disabling the append-only trigger.
    stack.psql(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change; "
        f"UPDATE audit_log SET details = '{{\"tampered\": true}}' WHERE id = {victim}; "
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change;"
    )
    try:
        # The full walk (periodic, or `telemed audit verify`) finds it; health says so.
        code, found = verify_chain(stack)
        assert code == 1 and found["status"] == "broken"
        assert found["firstBadId"] == int(victim)
        chain = await _chain(api)
        assert chain["http"] == 503 and chain["status"] == "broken"
        assert chain["auditChain"]["status"] == "broken"
        assert chain["auditChain"]["firstBadId"] == int(victim)
    finally:
        stack.psql(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change; "
            f"UPDATE audit_log SET details = '{original}'::jsonb WHERE id = {victim}; "
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change;"
        )
    assert verify_chain(stack)[0] == 0
    assert (await _chain(api))["auditChain"]["status"] == "ok"


async def test_removing_an_entry_is_detected(stack: Stack, api: Api) -> None:
    await api.active_session()
    victim = int(stack.psql("SELECT max(id) - 2 FROM audit_log"))
    saved = stack.psql(f"SELECT row_to_json(a)::text FROM audit_log a WHERE id = {victim}")
    stack.psql(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change; "
        f"DELETE FROM audit_log WHERE id = {victim}; "
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change;"
    )
    try:
        code, found = verify_chain(stack)
        assert code == 1 and found["firstBadId"] == victim + 1  # its successor no longer links
        chain = await _chain(api)
        assert chain["auditChain"]["status"] == "broken"
        assert chain["auditChain"]["firstBadId"] == victim + 1
    finally:
        stack.psql(
            "INSERT INTO audit_log SELECT * FROM json_populate_record(NULL::audit_log, "
            f"$json${saved}$json$::json)"
        )
    assert verify_chain(stack)[0] == 0
    assert (await _chain(api))["auditChain"]["status"] == "ok"


async def test_the_app_role_cannot_change_or_delete_audit_rows(stack: Stack, api: Api) -> None:
    await api.active_session()
    conn = await asyncpg.connect(stack.database_url)  # the role the app runs as
    try:
        assert await conn.fetchval("SELECT current_user") == "telemed_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "UPDATE audit_log SET action = 'x' WHERE id = (SELECT max(id) FROM audit_log)"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_log")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE audit_log")
        assert await conn.fetchval("SELECT count(*) FROM audit_log") > 0  # it can still read
    finally:
        await conn.close()
    # Even the owner hits the append-only trigger without disabling it first.
    owner = await asyncpg.connect(stack.database_admin_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await owner.execute("DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)")
    finally:
        await owner.close()


async def test_clinical_text_is_encrypted_at_rest(stack: Stack, api: Api) -> None:
    session, physician, patient = await api.active_session(notes="suspected arrhythmia")
    sid = session["sessionId"]
    doctor = api.token(physician, "physician")
    secret_text = "Amiodarone 200mg, 1x/day; ECG in 7 days"
    written = await api.call(
        "POST", "prescription", doctor, {"sessionId": sid, "text": secret_text}
    )
    assert written.status == 201 and written.body["classification"] == "confidential"
    note = await api.call(
        "POST", "notes", doctor, {"sessionId": sid, "text": "palpitations at night"}
    )
    followup = await api.call(
        "POST",
        "followup",
        doctor,
        {"sessionId": sid, "text": "review ECG", "dueAt": "2030-01-10T10:00:00+00:00"},
    )
    assert note.status == 201 and followup.status == 201

    # The database never sees the plaintext.
    owner = await asyncpg.connect(stack.database_admin_url)
    try:
        row = await owner.fetchrow(
            "SELECT id, body_enc FROM clinical_records WHERE id = $1::uuid", written.body["id"]
        )
        dump = await owner.fetchval(
            "SELECT string_agg(body_enc::text || coalesce(notes_enc::text, ''), '') "
            "FROM clinical_records JOIN sessions s ON s.id = session_id"
        )
        session_notes = await owner.fetchval(
            "SELECT notes_enc FROM sessions WHERE id = $1::uuid", sid
        )
    finally:
        await owner.close()
    blob = bytes(row["body_enc"])
    assert b"Amiodarone" not in blob and "Amiodarone" not in dump
    assert b"arrhythmia" not in bytes(session_notes)
    # Unreadable without the key; readable with it (and only for its own row).
    right = FieldCipher.from_config(stack.data_keys)
    assert right.decrypt(blob, f"clinical-record:{row['id']}") == secret_text
    with pytest.raises(DecryptionError):
        FieldCipher.from_config(FieldCipher.generate_spec()).decrypt(
            blob, f"clinical-record:{row['id']}"
        )
    with pytest.raises(DecryptionError):
        right.decrypt(blob, "clinical-record:00000000-0000-0000-0000-000000000000")

    # Through the API: the physician and the patient read it back; nobody else.
    for reader in (doctor, api.token(patient, "patient")):
        records = await api.call("GET", f"session/{sid}/records", reader)
        assert secret_text in [r["text"] for r in records.body["records"]]
    other = await api.licensed_physician()
    assert (
        await api.call("GET", f"session/{sid}/records", api.token(other, "physician"))
    ).code == "NOT_FOUND"
    # Only the session's physician writes.
    refused = await api.call(
        "POST", "notes", api.token(patient, "patient"), {"sessionId": sid, "text": "x"}
    )
    assert refused.code == "FORBIDDEN"


async def test_every_table_row_carries_a_data_classification(stack: Stack, api: Api) -> None:
    await api.active_session()
    tables = stack.psql(
        "SELECT string_agg(table_name, ',') FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name = 'classification'"
    ).split(",")
    assert {
        "sessions",
        "consents",
        "clinical_records",
        "audit_log",
        "clinicians",
        "licence_registry",
        "consent_texts",
        "session_participants",
    } <= set(tables)
    for table in tables:
        bad = stack.psql(
            f"SELECT count(*) FROM {table} WHERE classification NOT IN "
            "('public', 'internal', 'personal', 'sensitive', 'confidential')"
        )
        assert bad == "0", table


async def test_migrations_are_idempotent(stack: Stack) -> None:
    assert await migrate(stack.database_admin_url, "telemed_app") == []
    versions = stack.psql(
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"
    )
    assert versions.split(",")[0] == "1"
