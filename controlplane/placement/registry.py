"""Find SFU nodes in Redis and keep one RPC client per node.

SFU nodes register themselves (see sfu_worker/src/registry.js):
  telemed:sfu:nodes            set of node ids
  telemed:sfu:node:<nodeId>    hash {id, url, workers, load, routers, heartbeatAt}
                               that expires unless the node keeps beating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog

from controlplane.placement.sfu_client import SfuClient, SfuUnavailable
from controlplane.redis_text import text_map, texts

log = structlog.get_logger(__name__)

NODES_KEY = "telemed:sfu:nodes"


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


class SfuRegistry:
    def __init__(
        self, redis: aioredis.Redis, secret: str, *, timeout: float, listener: NodeListener
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._timeout = timeout
        self._listener = listener
        self._clients: dict[str, SfuClient] = {}

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

    async def pick_node(self) -> SfuNode:
        """The live node with the lowest load per worker."""
        nodes = [node for node in await self.live_nodes() if node.workers > 0]
        if not nodes:
            raise SfuUnavailable("no SFU node is registered")
        return min(nodes, key=lambda node: (node.load / node.workers, node.routers, node.id))

    async def client(self, node_id: str) -> SfuClient:
        client = self._clients.get(node_id)
        if client is not None and client.connected:
            return client
        raw = text_map(await self._redis.hgetall(node_key(node_id)))
        if not raw or "url" not in raw:
            raise SfuUnavailable(f"SFU node {node_id} is not registered")
        if client is not None:
            await client.close()
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
        self._clients.pop(node_id, None)
        await self._listener.on_node_lost(node_id)

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.close()
        self._clients.clear()
