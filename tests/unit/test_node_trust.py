"""Registry entry verdicts and the RPC credential (pure logic; the node's half is
exercised against a real SFU node in tests/integration/test_sfu_trust.py)."""

from __future__ import annotations

import pytest

from controlplane.placement.node_trust import (
    entry_signature,
    entry_verdict,
    leaves_host,
    registry_key,
    rpc_credential,
)

KEY = registry_key("k" * 32)
NOW = 1_800_000_000_000


def entry(**changes: str) -> dict[str, str]:
    fields = {
        "id": "sfu-1",
        "url": "wss://sfu-1.clinic.example:4443",
        "workers": "2",
        "load": "5",
        "routers": "1",
        "startedAt": str(NOW - 60_000),
        "heartbeatAt": str(NOW - 1_000),
    }
    fields.update(changes)
    return {**fields, "sig": entry_signature(KEY, fields)}


def test_a_signed_fresh_entry_is_trusted() -> None:
    assert entry_verdict(KEY, "sfu-1", entry(), now_ms=NOW) is None


@pytest.mark.parametrize("field", ["url", "load", "workers", "heartbeatAt"])
def test_changing_any_signed_field_breaks_the_signature(field: str) -> None:
    tampered = {**entry(), field: "9"}
    assert entry_verdict(KEY, "sfu-1", tampered, now_ms=NOW) == "bad_signature"


def test_verdicts_for_unsigned_other_key_copied_and_stale_entries() -> None:
    unsigned = {k: v for k, v in entry().items() if k != "sig"}
    assert entry_verdict(KEY, "sfu-1", unsigned, now_ms=NOW) == "unsigned"
    assert entry_verdict(registry_key("o" * 32), "sfu-1", entry(), now_ms=NOW) == "bad_signature"
    assert entry_verdict(KEY, "sfu-2", entry(), now_ms=NOW) == "wrong_node"
    old = entry(heartbeatAt=str(NOW - 31_000))
    assert entry_verdict(KEY, "sfu-1", old, now_ms=NOW) == "stale"


@pytest.mark.parametrize(
    ("url", "verdict"),
    [
        ("ws://127.0.0.1:4443", None),
        ("ws://127.8.0.3:4443", None),
        ("ws://localhost:4443", None),
        ("ws://[::1]:4443", None),
        ("ws://10.0.0.5:4443", "plaintext_off_host"),
        ("ws://sfu-1.internal:4443", "plaintext_off_host"),
        ("wss://10.0.0.5:4443", None),
    ],
)
def test_plaintext_is_trusted_only_on_loopback(url: str, verdict: str | None) -> None:
    assert entry_verdict(KEY, "sfu-1", entry(url=url), now_ms=NOW) == verdict
    assert leaves_host(url) == (not url.startswith(("ws://127", "ws://localhost", "ws://[::1]")))


def test_the_rpc_credential_names_the_node_and_expires_within_a_minute() -> None:
    credential = rpc_credential("s" * 32, "sfu-1", now_ms=NOW)
    scheme, node, expires, mac = credential.rsplit(" ", 3)
    assert (scheme, node, int(expires)) == ("TelemedSfu v1", "sfu-1", NOW + 60_000)
    assert "s" * 32 not in credential and len(mac) == 64
    assert rpc_credential("s" * 32, "sfu-2", now_ms=NOW) != credential
