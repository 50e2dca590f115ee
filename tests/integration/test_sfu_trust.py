"""The control plane talks only to SFU nodes it can authenticate: registry entries
must carry a valid signature, RPC links are TLS-verified against the configured CA
(or loopback), and what travels is a short-lived credential, never the secret."""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from controlplane.devstack import services as ls
from controlplane.devstack.local_ca import server_certificate
from controlplane.media.room_state import RoomState
from controlplane.placement.node_trust import entry_signature, registry_key, rpc_credential
from controlplane.placement.registry import NODES_KEY, node_key
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call
from tests.network_namespace import HOST_IP, veth_namespace

pytestmark = pytest.mark.integration

TLS_NODE = "sfu-tls-1"


@dataclass
class Fleet:
    """A Redis and a control plane of their own (trusting one CA for node
    certificates) and one SFU node serving its RPC over TLS with that CA's cert."""

    stack: Stack
    redis: ls.ManagedProcess
    control: ls.ManagedProcess
    node: ls.ManagedProcess
    ca_file: Path


@pytest.fixture(scope="module")
def fleet(stack: Stack) -> Iterator[Fleet]:
    trusted = server_certificate(stack.data_dir / "sfu-ca", ["127.0.0.1"])
    redis = ls.start_redis(stack.data_dir / "redis-trust")
    control = ls.start_control_plane(
        stack.data_dir,
        stack.control_plane_env(REDIS_URL=redis.url, SFU_CA_FILE=str(trusted.ca_cert)),
    )
    node = ls.start_sfu_node(
        stack.data_dir,
        redis_url=redis.url,
        secret=stack.sfu_secret,
        node_id=TLS_NODE,
        rtc_min_port=49000,
        rtc_max_port=49499,
        num_workers=1,
        tls=(trusted.cert, trusted.key),
    )
    try:
        yield Fleet(stack, redis, control, node, trusted.ca_cert)
    finally:
        node.stop()
        control.stop()
        redis.stop()


@pytest.fixture
async def fleet_redis(fleet: Fleet) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(fleet.redis.url, decode_responses=True)
    yield client
    await client.aclose()


@dataclass
class Listener:
    """A TCP (or TLS) server that only records what reaches it."""

    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.received.append(await asyncio.wait_for(reader.read(8192), 2))
        except (TimeoutError, ConnectionError):
            self.received.append(b"")
        writer.close()

    async def start(self, host: str, tls: ssl.SSLContext | None = None) -> Listener:
        self.server = await asyncio.start_server(self._handle, host, 0, ssl=tls)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def register(
    redis: aioredis.Redis, node_id: str, url: str, *, key: bytes | None, sig: str | None = None
) -> None:
    """A registry entry that would win placement (many workers, no load)."""
    entry = {
        "id": node_id,
        "url": url,
        "workers": "64",
        "load": "0",
        "routers": "0",
        "startedAt": str(int(time.time() * 1000)),
        "heartbeatAt": str(int(time.time() * 1000)),
    }
    if sig is not None:
        entry["sig"] = sig
    elif key is not None:
        entry["sig"] = entry_signature(key, entry)
    await redis.hset(node_key(node_id), mapping=entry)
    await redis.expire(node_key(node_id), 60)
    await redis.sadd(NODES_KEY, node_id)


async def unregister(redis: aioredis.Redis, *node_ids: str) -> None:
    for node_id in node_ids:
        await redis.delete(node_key(node_id))
        await redis.srem(NODES_KEY, node_id)


async def untrusted_counts(fleet: Fleet) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{fleet.control.url}/metrics") as response,
    ):
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "telemed_sfu_untrusted_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


async def placed_on(redis: aioredis.Redis, room: str) -> str | None:
    record = await RoomState(redis).get_room(room)
    return record.nodeId if record else None


async def call_on(fleet: Fleet, peers: list[MediaPeer]) -> tuple[str, MediaPeer, MediaPeer]:
    room = new_room_id()
    doctor = MediaPeer(fleet.control.url, fleet.stack.token(room, "dr-trust", "physician"))
    patient = MediaPeer(fleet.control.url, fleet.stack.token(room, "pt-trust", "patient"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    return room, doctor, patient


async def test_a_node_verified_over_tls_carries_a_call(
    fleet: Fleet, fleet_redis: aioredis.Redis, peers: list[MediaPeer]
) -> None:
    assert fleet.node.url.startswith("wss://")
    registered = await fleet_redis.hgetall(node_key(TLS_NODE))
    assert registered["url"] == fleet.node.url and re.fullmatch(r"[0-9a-f]{64}", registered["sig"])

    room, doctor, patient = await call_on(fleet, peers)
    for receiver, sender in ((doctor, "pt-trust"), (patient, "dr-trust")):
        await receiver.wait_for_frames(sender, "video", count=10)
        await receiver.wait_for_frames(sender, "audio", count=10)
    assert await placed_on(fleet_redis, room) == TLS_NODE


async def test_unsigned_forged_and_copied_entries_are_ignored_counted_and_never_contacted(
    fleet: Fleet, fleet_redis: aioredis.Redis, peers: list[MediaPeer]
) -> None:
    """Whoever can write Redis but lacks the secret cannot attract a single room."""
    impostor = await Listener().start("127.0.0.1")
    url = f"ws://127.0.0.1:{impostor.port}"
    genuine = await fleet_redis.hgetall(node_key(TLS_NODE))
    before = await untrusted_counts(fleet)
    try:
        await register(fleet_redis, "sfu-a-unsigned", url, key=None)
        await register(fleet_redis, "sfu-a-forged", url, key=None, sig=secrets.token_hex(32))
        await register(fleet_redis, "sfu-a-wrongkey", url, key=registry_key("x" * 32))
        # The real node's signed entry, copied under another id (its url is the real one).
        await fleet_redis.hset(node_key("sfu-a-copied"), mapping=genuine)
        await fleet_redis.sadd(NODES_KEY, "sfu-a-copied")

        for _ in range(3):
            room, doctor, _ = await call_on(fleet, peers)
            assert await placed_on(fleet_redis, room) == TLS_NODE
        await doctor.wait_for_frames("pt-trust", "video", count=5)
    finally:
        await unregister(
            fleet_redis, "sfu-a-unsigned", "sfu-a-forged", "sfu-a-wrongkey", "sfu-a-copied"
        )
        await impostor.stop()

    assert impostor.received == []
    after = await untrusted_counts(fleet)
    for reason in ("unsigned", "bad_signature", "wrong_node"):
        assert after.get(reason, 0) > before.get(reason, 0), (reason, after)


async def test_a_node_whose_certificate_the_ca_did_not_sign_is_sent_nothing(
    fleet: Fleet, fleet_redis: aioredis.Redis, peers: list[MediaPeer]
) -> None:
    """A correctly signed entry whose address now answers with another certificate
    (a hijacked address): the TLS handshake fails before any request, and rooms go
    to the verified node."""
    other_ca = server_certificate(fleet.stack.data_dir / "sfu-ca-other", ["127.0.0.1"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(other_ca.cert, other_ca.key)
    impostor = await Listener().start("127.0.0.1", tls)
    before = await untrusted_counts(fleet)
    key = registry_key(fleet.stack.sfu_secret)
    try:
        await register(fleet_redis, "sfu-a-hijacked", f"wss://127.0.0.1:{impostor.port}", key=key)
        room, doctor, _ = await call_on(fleet, peers)
        assert await placed_on(fleet_redis, room) == TLS_NODE
        await doctor.wait_for_frames("pt-trust", "video", count=5)
    finally:
        await unregister(fleet_redis, "sfu-a-hijacked")
        await impostor.stop()

    assert impostor.received == []  # no handshake completed, so no request was read
    after = await untrusted_counts(fleet)
    assert after.get("tls_unverified", 0) > before.get("tls_unverified", 0), after


async def test_plaintext_rpc_to_another_host_is_never_attempted(
    fleet: Fleet, fleet_redis: aioredis.Redis, peers: list[MediaPeer]
) -> None:
    """A signed entry with ws:// to an address off loopback (the host side of a veth
    pair stands in for another machine) is ignored without connecting."""
    before = await untrusted_counts(fleet)
    with veth_namespace():
        listener = await Listener().start(HOST_IP)
        key = registry_key(fleet.stack.sfu_secret)
        try:
            await register(fleet_redis, "sfu-a-offhost", f"ws://{HOST_IP}:{listener.port}", key=key)
            room, _, _ = await call_on(fleet, peers)
            assert await placed_on(fleet_redis, room) == TLS_NODE
        finally:
            await unregister(fleet_redis, "sfu-a-offhost")
            await listener.stop()
    assert listener.received == []
    after = await untrusted_counts(fleet)
    assert after.get("plaintext_off_host", 0) > before.get("plaintext_off_host", 0), after


async def test_what_reaches_a_node_is_a_short_lived_credential_not_the_secret(
    fleet: Fleet, fleet_redis: aioredis.Redis, peers: list[MediaPeer]
) -> None:
    """A trusted loopback entry whose port is held by something else: that process
    sees a credential bound to the node id and a minute, never SFU_SECRET."""
    squatter = await Listener().start("127.0.0.1")
    key = registry_key(fleet.stack.sfu_secret)
    try:
        await register(fleet_redis, "sfu-a-squatted", f"ws://127.0.0.1:{squatter.port}", key=key)
        await call_on(fleet, peers)
    finally:
        await unregister(fleet_redis, "sfu-a-squatted")
        await squatter.stop()

    assert squatter.received, "the loopback entry was trusted, so it was tried"
    request = b"".join(squatter.received).decode(errors="replace")
    assert fleet.stack.sfu_secret not in request
    credential = re.search(r"(?im)^authorization: (.*?)\r?$", request)
    assert credential is not None
    scheme, node, expires, mac = credential.group(1).rsplit(" ", 3)
    assert (scheme, node) == ("TelemedSfu v1", "sfu-a-squatted") and re.fullmatch(
        r"[0-9a-f]{64}", mac
    )
    assert 0 < int(expires) - time.time() * 1000 <= 61_000


@pytest.mark.parametrize(
    "credential",
    ["another-node", "expired", "bearer-secret", "wrong-secret"],
)
async def test_the_node_refuses_credentials_that_are_not_its_own_and_live(
    fleet: Fleet, credential: str
) -> None:
    secret = fleet.stack.sfu_secret
    now = int(time.time() * 1000)
    header = {
        "another-node": rpc_credential(secret, "sfu-other"),
        "expired": rpc_credential(secret, TLS_NODE, now_ms=now - 61_000),
        "bearer-secret": f"Bearer {secret}",
        "wrong-secret": rpc_credential("w" * 32, TLS_NODE),
    }[credential]
    tls = ssl.create_default_context(cafile=str(fleet.ca_file))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(fleet.node.url, headers={"Authorization": header}, ssl=tls)
        assert refused.value.status == 401
        good = rpc_credential(secret, TLS_NODE)
        async with http.ws_connect(fleet.node.url, headers={"Authorization": good}, ssl=tls) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "getInfo", "params": {}})
            answer = await ws.receive_json(timeout=5)
    assert answer["result"]["workers"] == 1
