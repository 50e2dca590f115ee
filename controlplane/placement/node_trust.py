"""What makes an SFU node trusted: a signed registry entry, an RPC link that is
TLS-verified whenever it leaves the host, and a credential that is not the secret.

Both sides derive two keys from the shared ``SFU_SECRET`` (HMAC-SHA256 with a
label each, so neither key is the secret and neither opens the other's door):

- the *registry key* signs every heartbeat a node writes to Redis, over a fixed,
  ordered list of its fields.  An entry that is unsigned, badly signed, for
  another node id, too old, or whose RPC URL is plaintext to another host is
  ignored (and counted).  Whoever can write Redis but lacks the secret cannot
  point a control plane at a node of their own.
- the *RPC key* makes the WebSocket credential: ``TelemedSfu v1 <node> <expiry
  ms> <hmac>``, bound to one node and valid for a minute.  The secret itself
  never travels, so even a node reached by mistake learns nothing lasting.

sfu_worker/src/trust.js is the node's half; the two must stay in step.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SIGNED_FIELDS = (
    "id",
    "url",
    "workers",
    "load",
    "routers",
    "draining",
    "startedAt",
    "heartbeatAt",
)
# A heartbeat older than this is refused even when well signed (a replayed entry of
# a node that moved or retired).  Nodes beat every 2 s; the margin covers clock skew.
MAX_ENTRY_AGE_MS = 30_000
RPC_CREDENTIAL_TTL_MS = 60_000
RPC_SCHEME = "TelemedSfu v1"

# Why an entry was ignored (the ``reason`` label of the counter).
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
WRONG_NODE = "wrong_node"
STALE = "stale"
PLAINTEXT_OFF_HOST = "plaintext_off_host"
TLS_UNVERIFIED = "tls_unverified"  # the node's certificate failed verification


def _derive(secret: str, label: str) -> bytes:
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).digest()


def registry_key(secret: str) -> bytes:
    return _derive(secret, "telemed sfu registry v1")


def rpc_key(secret: str) -> bytes:
    return _derive(secret, "telemed sfu rpc v1")


def entry_signature(key: bytes, entry: Mapping[str, str]) -> str:
    message = "\n".join(f"{name}={entry.get(name, '')}" for name in SIGNED_FIELDS)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def leaves_host(url: str) -> bool:
    """The URL's host is not this machine's loopback."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def entry_verdict(
    key: bytes, node_id: str, entry: Mapping[str, str], now_ms: int | None = None
) -> str | None:
    """``None`` when the entry can be trusted, else the reason it is ignored."""
    signature = entry.get("sig", "")
    if not signature:
        return UNSIGNED
    if not hmac.compare_digest(signature, entry_signature(key, entry)):
        return BAD_SIGNATURE
    if entry.get("id") != node_id:
        return WRONG_NODE  # a genuine entry copied under another node's key
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        beat = int(entry.get("heartbeatAt", "0"))
    except ValueError:
        return BAD_SIGNATURE
    if now - beat > MAX_ENTRY_AGE_MS:
        return STALE
    url = entry.get("url", "")
    if url.startswith("ws://") and leaves_host(url):
        return PLAINTEXT_OFF_HOST
    return None


def rpc_credential(secret: str, node_id: str, now_ms: int | None = None) -> str:
    """The Authorization header value for one node, valid for a minute."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    expires = now + RPC_CREDENTIAL_TTL_MS
    mac = hmac.new(rpc_key(secret), f"{node_id}\n{expires}".encode(), hashlib.sha256)
    return f"{RPC_SCHEME} {node_id} {expires} {mac.hexdigest()}"


@dataclass(frozen=True)
class NodeTls:
    """How ``wss://`` node certificates are verified: against ``ca_file`` when
    configured (a private CA for the SFU fleet), else the system's trust store.
    The host name is always checked."""

    ca_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
