"""Find SFU nodes in Redis and keep one RPC client per node.

SFU nodes register themselves (see sfu_worker/src/registry.js):
  telemed:sfu:nodes            set of node ids
  telemed:sfu:node:<nodeId>    hash {id, url, workers, load, routers, startedAt,
                               heartbeatAt, sig} that expires unless the node keeps
                               beating.
Only entries that pass ``node_trust.entry_verdict`` are used; the others are
ignored, logged once per node and reason, and reported to ``on_rejected``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog

from controlplane.placement.node_trust import (
    TLS_UNVERIFIED,
    NodeTls,
    entry_verdict,
    registry_key,
)
from controlplane.placement.sfu_client import (
    SfuClient,
    SfuError,
    SfuRefused,
    SfuUnavailable,
    SfuUntrusted,
)
from controlplane.redis_text import text_map, texts

log = structlog.get_logger(__name__)

NODES_KEY = "telemed:sfu:nodes"
# Reconnecting a dropped RPC link: first retry after 50 ms, doubling up to 1 s.
RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 1.0


def node_key(node_id: str) -> str:
    return f"telemed:sfu:node:{node_id}"


@dataclass(frozen=True)
class SfuNode:
    id: str
    url: str
    workers: int
    load: int
    routers: int
    draining: bool = False  # telemed sfu drain: no new rooms, it exits when empty


class NodeListener(Protocol):
    """Receives what SFU nodes push, and hears when a node's connection is lost."""

    async def on_notification(self, node_id: str, event: str, data: dict[str, Any]) -> None: ...

    async def on_node_lost(self, node_id: str) -> None: ...


class _Deaf:
    async def on_notification(self, node_id: str, event: str, data: dict[str, Any]) -> None:
        pass

    async def on_node_lost(self, node_id: str) -> None:
        pass


class SfuRegistry:
    def __init__(
        self,
        redis: aioredis.Redis,
        secret: str,
        *,
        timeout: float,
        tls: NodeTls | None = None,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._registry_key = registry_key(secret)
        self._tls = tls or NodeTls()
        self._timeout = timeout
        self._on_rejected: Callable[[str], None] = lambda _reason: None
        self._logged_rejections: set[tuple[str, str]] = set()
        self._listener: NodeListener = _Deaf()
        self._clients: dict[str, SfuClient] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        # When each node process started, as it registered: a change means a restart.
        self._started: dict[str, str] = {}
        self._recovering: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def listen(self, listener: NodeListener) -> None:
        """Who hears what the nodes push (set once, before the first connection:
        the listener acts on rooms, which are placed through this registry)."""
        self._listener = listener

    def on_rejected(self, callback: Callable[[str], None]) -> None:
        """Called with the reason each time an entry or a node is not trusted."""
        self._on_rejected = callback

    def _reject(self, node_id: str, reason: str) -> None:
        self._on_rejected(reason)
        if (node_id, reason) not in self._logged_rejections and len(self._logged_rejections) < 1024:
            self._logged_rejections.add((node_id, reason))
            log.warning("sfu_node_not_trusted", node_id=node_id, reason=reason)

    async def _entry(self, node_id: str) -> tuple[dict[str, str] | None, bool]:
        """The node's registry entry if it can be trusted, and whether one exists."""
        raw = text_map(await self._redis.hgetall(node_key(node_id)))
        if not raw or "url" not in raw:
            return None, False
        reason = entry_verdict(self._registry_key, node_id, raw)
        if reason is not None:
            self._reject(node_id, reason)
            return None, True
        return raw, True

    async def live_nodes(self) -> list[SfuNode]:
        """Nodes whose heartbeat has not expired; stale ids are pruned from the set."""
        nodes: list[SfuNode] = []
        for node_id in texts(await self._redis.smembers(NODES_KEY)):
            raw, exists = await self._entry(node_id)
            if not exists:
                await self._redis.srem(NODES_KEY, node_id)
            if raw is None:
                continue
            nodes.append(
                SfuNode(
                    id=node_id,
                    url=raw["url"],
                    workers=int(raw.get("workers", 0)),
                    load=int(raw.get("load", 0)),
                    routers=int(raw.get("routers", 0)),
                    draining=raw.get("draining") == "1",
                )
            )
        return nodes

    def reachable(self, node_id: str) -> bool:
        """This instance holds a live RPC connection to the node."""
        client = self._clients.get(node_id)
        return client is not None and client.connected

    async def ranked_nodes(self) -> list[SfuNode]:
        """Trusted live nodes that take new rooms (not draining), the lowest load per
        worker first.  With none registered (Redis just lost its data; nodes register
        again on their next heartbeat), the nodes this instance is connected to, as
        they describe themselves."""
        live = await self.live_nodes()
        nodes = [node for node in live if node.workers > 0 and not node.draining]
        if not live:
            connected = await self._connected_nodes()
            nodes = [node for node in connected if node.workers > 0 and not node.draining]
        if not nodes:
            raise SfuUnavailable(
                "every SFU node is draining" if live else "no SFU node is registered"
            )
        return sorted(nodes, key=lambda node: (node.load / node.workers, node.routers, node.id))

    async def _connected_nodes(self) -> list[SfuNode]:
        nodes = []
        for node_id, client in list(self._clients.items()):
            if not client.connected:
                continue
            try:
                info = await client.request("getInfo")
            except SfuError:
                continue
            nodes.append(
                SfuNode(
                    id=node_id,
                    url=client.url,
                    workers=int(info.get("workers", 0)),
                    load=int(info.get("load", 0)),
                    routers=int(info.get("routers", 0)),
                    draining=bool(info.get("draining")),
                )
            )
        return nodes

    async def client(self, node_id: str) -> SfuClient:
        client = self._clients.get(node_id)
        if client is not None and client.connected:
            return client
        # One link per node: requests that find none at the same moment wait for the
        # first to make it.  (Two live links deliver every notification twice.)
        async with self._connecting.setdefault(node_id, asyncio.Lock()):
            client = self._clients.get(node_id)
            if client is not None and client.connected:
                return client
            return await self._connect(node_id, client)

    async def _connect(self, node_id: str, client: SfuClient | None) -> SfuClient:
        raw, exists = await self._entry(node_id)
        if raw is None:
            state = "not trusted" if exists else "not registered"
            raise SfuUnavailable(f"SFU node {node_id} is {state}")
        if client is not None:
            await client.close()
        self._started.setdefault(node_id, raw.get("startedAt", ""))
        client = SfuClient(
            node_id,
            raw["url"],
            self._secret,
            timeout=self._timeout,
            on_notification=self._listener.on_notification,
            on_disconnect=self._handle_disconnect,
            tls=self._tls,
        )
        try:
            await client.connect()
        except SfuUntrusted:
            self._reject(node_id, TLS_UNVERIFIED)
            raise
        self._clients[node_id] = client
        return client

    async def _handle_disconnect(self, node_id: str) -> None:
        """The RPC link dropped: a blip until proven otherwise (see _recover)."""
        self._clients.pop(node_id, None)
        if self._closing or node_id in self._recovering:
            return
        task = asyncio.create_task(self._recover(node_id))
        self._recovering[node_id] = task
        task.add_done_callback(lambda _t: self._recovering.pop(node_id, None))

    async def _recover(self, node_id: str) -> None:
        """Reconnect with backoff.  The node is dead, and its rooms are failed, only
        when its registry heartbeat expired, it restarted, or nothing listens on its
        RPC port any more; a link that comes back leaves every room alone."""
        delay = RECONNECT_FIRST_DELAY
        started = time.monotonic()
        while not self._closing:
            await asyncio.sleep(delay)
            verdict = await self._probe(node_id)
            if verdict == "alive":
                log.info(
                    "sfu_link_restored",
                    node_id=node_id,
                    seconds=round(time.monotonic() - started, 3),
                )
                return
            if verdict == "dead":
                log.error("sfu_node_dead", node_id=node_id)
                self._started.pop(node_id, None)
                await self._listener.on_node_lost(node_id)
                return
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _probe(self, node_id: str) -> str:
        """ "alive" (reconnected), "dead", or "unknown" (try again)."""
        try:
            raw, exists = await self._entry(node_id)
        except Exception:
            return "unknown"  # Redis away: no verdict either way
        if not exists:
            return "dead"  # the heartbeat expired
        if raw is None:
            return "unknown"  # not trusted now: the node's next heartbeat decides
        known = self._started.get(node_id)
        if known and raw.get("startedAt") and raw["startedAt"] != known:
            return "dead"  # a new process: the old one's routers died with it
        try:
            await self.client(node_id)
        except SfuRefused:
            return "dead"
        except SfuUnavailable:
            return "unknown"
        return "alive"

    async def close(self) -> None:
        self._closing = True
        for task in list(self._recovering.values()):
            task.cancel()
        for client in list(self._clients.values()):
            await client.close()
        self._clients.clear()
