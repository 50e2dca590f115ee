"""Operator commands on the SFU fleet (``telemed sfu ...``): list the registered
nodes as control planes see them, and drain one.  A drained node takes no new
rooms (its signed registry entry says so and control planes place rooms
elsewhere; it also refuses ``createRouter``); the calls on it go on, and it exits
once its last room closes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from controlplane.placement.node_trust import NodeTls
from controlplane.placement.registry import SfuRegistry


def _registry(env: dict[str, str]) -> tuple[aioredis.Redis, SfuRegistry]:
    redis = aioredis.from_url(
        env.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
    )
    ca_file = env.get("SFU_CA_FILE")
    registry = SfuRegistry(
        redis,
        env.get("SFU_SECRET", ""),
        timeout=float(env.get("SFU_RPC_TIMEOUT") or 10),
        tls=NodeTls(Path(ca_file) if ca_file else None),
    )
    return redis, registry


async def list_nodes(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every trusted live node: {id, url, workers, load, routers, draining}."""
    redis, registry = _registry(env)
    try:
        return [asdict(node) for node in await registry.live_nodes()]
    finally:
        await registry.close()
        await redis.aclose()


async def drain(env: dict[str, str], node_id: str) -> dict[str, Any]:
    """Tell a node to drain; its answer: {nodeId, draining, routers} (the rooms still
    on it).  SfuError if it cannot be reached or trusted."""
    redis, registry = _registry(env)
    try:
        client = await registry.client(node_id)
        answer: dict[str, Any] = await client.request("drain")
        return answer
    finally:
        await registry.close()
        await redis.aclose()
