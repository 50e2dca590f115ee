"""The audit chain verified incrementally by a periodic job and anchored by signed
checkpoints (issue 15): an attacker with the database owner's rights who rewrites
an entry and recomputes every hash after it (a chain that is consistent again)
is detected; the job's result is a metric."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from controlplane.clinical.audit import row_hash
from tests.conftest import Stack
from tests.integration.api_client import Api
from tests.integration.test_compliance_records import verify_chain

pytestmark = pytest.mark.integration

_CHAIN_LOCK = 0x7E1EA0D17  # the lock AuditLog takes to extend the chain


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def rewrite_and_rehash(
    owner: asyncpg.Connection, victim: int, details: dict[str, Any]
) -> dict[str, Any]:
    """What an attacker holding the owner role can do: change an entry, recompute the
    hash of it and of every entry after it, and the head.  Returns the old details."""
    async with owner.transaction():
        await owner.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)
        await owner.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
        rows = await owner.fetch("SELECT * FROM audit_log WHERE id >= $1 ORDER BY id", victim)
        original: dict[str, Any] = json.loads(rows[0]["details"])
        prev = bytes(rows[0]["prev_hash"])
        for row in rows:
            new = details if row["id"] == victim else json.loads(row["details"])
            digest = row_hash(row, prev, new)
            await owner.execute(
                "UPDATE audit_log SET details = $1::jsonb, prev_hash = $2, hash = $3 WHERE id = $4",
                json.dumps(new),
                prev,
                digest,
                row["id"],
            )
            prev = digest
        await owner.execute(
            "UPDATE audit_head SET last_id = $1, last_hash = $2", rows[-1]["id"], prev
        )
        await owner.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
    # The chain is consistent again: walking it alone finds nothing.
    previous = bytes(32)
    for row in await owner.fetch("SELECT * FROM audit_log ORDER BY id"):
        assert bytes(row["prev_hash"]) == previous
        assert bytes(row["hash"]) == row_hash(row, previous)
        previous = bytes(row["hash"])
    return original


async def gauge(http: aiohttp.ClientSession, url: str, scope: str) -> float | None:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    match = re.search(rf'^telemed_audit_chain_ok\{{scope="{scope}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


async def until_gauge(http: aiohttp.ClientSession, url: str, scope: str, value: float) -> None:
    for _ in range(40):
        if await gauge(http, url, scope) == value:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"telemed_audit_chain_ok{{scope={scope}}} never became {value}")


async def test_a_rewritten_and_rehashed_entry_is_detected_by_the_signed_checkpoints(
    stack: Stack, api: Api, instance
) -> None:
    cp = instance(TELEMED_AUDIT_VERIFY_INTERVAL="1")  # its job runs every second
    await api.active_session()
    assert verify_chain(stack)[0] == 0  # a full walk; it signs a checkpoint at the head
    await until_gauge(api.http, cp.url, "incremental", 1.0)
    head = int(stack.psql("SELECT max(last_id) FROM audit_checkpoints"))
    victim = head - 2
    owner = await asyncpg.connect(stack.database_admin_url)
    try:
        original = await rewrite_and_rehash(owner, victim, {"code": "rewritten"})
        first_signed_after = int(
            stack.psql(f"SELECT min(last_id) FROM audit_checkpoints WHERE last_id >= {victim}")
        )
        code, found = verify_chain(stack)
        assert code == 1 and found["status"] == "broken"
        assert found["firstBadId"] == first_signed_after
        assert "signed checkpoint" in found["reason"]
        health = await api.call("GET", "health/compliance", None)
        assert health.status == 503 and health.body["auditChain"]["status"] == "broken"
        # The periodic incremental job sees it too, and its metric drops (the alert rule).
        await until_gauge(api.http, cp.url, "incremental", 0.0)
        assert (
            stack.psql(
                "SELECT status FROM audit_verifications WHERE scope = 'incremental' "
                "ORDER BY id DESC LIMIT 1"
            )
            == "broken"
        )
        # No checkpoint was signed over the rewritten chain.
        assert int(stack.psql("SELECT max(last_id) FROM audit_checkpoints")) == head
    finally:
        await rewrite_and_rehash(owner, victim, original)
        await owner.close()
    assert verify_chain(stack)[0] == 0
    await until_gauge(api.http, cp.url, "incremental", 1.0)
    assert (await api.call("GET", "health/compliance", None)).status == 200


async def test_incremental_verification_walks_only_what_came_after_the_checkpoint(
    stack: Stack, api: Api
) -> None:
    # The stack is shared: other tests' control planes may append entries (a refusal
    # window's summary, a resume window expiring) or sign checkpoints at any moment,
    # so counts are taken against the checkpoints actually stored.
    def after(last_id: int) -> int:
        return int(stack.psql(f"SELECT count(*) FROM audit_log WHERE id > {last_id}"))

    def newest_checkpoint() -> int:
        return int(stack.psql("SELECT max(last_id) FROM audit_checkpoints"))

    assert verify_chain(stack)[0] == 0
    total = int(stack.psql("SELECT count(*) FROM audit_log"))
    await api.active_session()  # a handful of new entries
    added = int(stack.psql("SELECT count(*) FROM audit_log")) - total
    code, found = verify_chain(stack, "--incremental")
    assert code == 0 and found["scope"] == "incremental"
    walked_from = int(
        stack.psql(
            "SELECT coalesce(max(last_id), 0) FROM audit_checkpoints "
            f"WHERE last_id < {found['lastId']}"
        )
    )
    assert found["entries"] == after(walked_from) - after(found["lastId"])
    assert added <= found["entries"] < total
    # The health request walks only the tail after the newest checkpoint.
    tail_before = after(newest_checkpoint())
    health = await api.call("GET", "health/compliance", None)
    tail_after = after(newest_checkpoint())
    assert health.status == 200
    assert min(tail_before, tail_after) <= health.body["auditChain"]["entries"]
    assert health.body["auditChain"]["entries"] <= max(tail_before, tail_after) < total
    assert health.body["auditChain"]["lastFull"]["status"] == "ok"


async def test_the_app_role_cannot_rewrite_or_remove_signed_checkpoints(stack: Stack) -> None:
    assert verify_chain(stack)[0] == 0
    conn = await asyncpg.connect(stack.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_checkpoints SET mac = '\\x00'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_checkpoints")
        assert await conn.fetchval("SELECT count(*) FROM audit_checkpoints") > 0
    finally:
        await conn.close()
