"""Find SFU nodes in Redis and keep one RPC client per node.

SFU nodes register themselves (see sfu_worker/src/registry.js):
  telemed:sfu:nodes            set of node ids
  telemed:sfu:node:<nodeId>    hash {id, url, workers, load, routers, heartbeatAt}
                               that expires unless the node keeps beating.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog

from controlplane.placement.sfu_client import SfuClient, SfuError, SfuRefused, SfuUnavailable
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
    def __init__(self, redis: aioredis.Redis, secret: str, *, timeout: float) -> None:
        self._redis = redis
        self._secret = secret
        self._timeout = timeout
        self._listener: NodeListener = _Deaf()
        self._clients: dict[str, SfuClient] = {}
        # When each node process started, as it registered: a change means a restart.
        self._started: dict[str, str] = {}
        self._recovering: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def listen(self, listener: NodeListener) -> None:
        """Who hears what the nodes push (set once, before the first connection:
        the listener acts on rooms, which are placed through this registry)."""
        self._listener = listener

    async def live_nodes(self) -> list[SfuNode]:
        """Nodes whose heartbeat has not expired; stale ids are pruned from the set."""
        nodes: list[SfuNode] = []
        for node_id in texts(await self._redis.smembers(NODES_KEY)):
            raw = text_map(await self._redis.hgetall(node_key(node_id)))
            if not raw or "url" not in raw:
                await self._redis.srem(NODES_KEY, node_id)
                continue
            nodes.append(
                SfuNode(
                    id=node_id,
                    url=raw["url"],
                    workers=int(raw.get("workers", 0)),
                    load=int(raw.get("load", 0)),
                    routers=int(raw.get("routers", 0)),
                )
            )
        return nodes

    def reachable(self, node_id: str) -> bool:
        """This instance holds a live RPC connection to the node."""
        client = self._clients.get(node_id)
        return client is not None and client.connected

    async def pick_node(self) -> SfuNode:
        """The live node with the lowest load per worker.  With none registered
        (Redis just lost its data; nodes register again on their next heartbeat),
        the nodes this instance is connected to, as they describe themselves."""
        nodes = [node for node in await self.live_nodes() if node.workers > 0]
        if not nodes:
            nodes = [node for node in await self._connected_nodes() if node.workers > 0]
        if not nodes:
            raise SfuUnavailable("no SFU node is registered")
        return min(nodes, key=lambda node: (node.load / node.workers, node.routers, node.id))

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
                )
            )
        return nodes

    async def client(self, node_id: str) -> SfuClient:
        client = self._clients.get(node_id)
        if client is not None and client.connected:
            return client
        raw = text_map(await self._redis.hgetall(node_key(node_id)))
        if not raw or "url" not in raw:
            raise SfuUnavailable(f"SFU node {node_id} is not registered")
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
        )
        await client.connect()
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
            raw = text_map(await self._redis.hgetall(node_key(node_id)))
        except Exception:
            return "unknown"  # Redis away: no verdict either way
        if not raw or "url" not in raw:
            return "dead"  # the heartbeat expired
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
