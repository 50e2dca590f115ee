"""Readiness of this instance (``/health``): Redis and PostgreSQL answer and at
least one SFU node is registered (the TURN servers' state is shown, but calls
still connect directly without them, so it does not make the instance unready);
the media servers one by one (``/api/telemedicine/health/servers``); and the
audit chain's integrity (``/api/telemedicine/health/compliance``)."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis

from controlplane.clinical.audit_integrity import AuditIntegrity
from controlplane.placement.registry import SfuRegistry
from controlplane.telemetry.turn_health import TurnHealth


class Readiness:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        registry: SfuRegistry,
        audit: AuditIntegrity,
        turn: TurnHealth,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._registry = registry
        self._audit = audit
        self._turn = turn

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): each dependency as ``ok`` / ``unreachable``, the SFU node count."""
        body: dict[str, Any] = {"status": "ok"}
        ready = True
        try:
            await self._redis.ping()
            body["redis"] = "ok"
        except Exception:
            body["redis"] = "unreachable"
            ready = False
        try:
            await self._pool.fetchval("SELECT 1")
            body["database"] = "ok"
        except Exception:
            body["database"] = "unreachable"
            ready = False
        try:
            nodes = await self._registry.live_nodes()
            body["sfuNodes"] = len(nodes)
            ready = ready and bool(nodes)
        except Exception:
            body["sfuNodes"] = 0
            ready = False
        body["turn"] = self._turn.summary()
        if not ready:
            body["status"] = "degraded"
        return ready, body

    async def servers(self) -> dict[str, Any]:
        """Each SFU node (registered, and whether this instance reaches it) and each
        TURN server's last check, per transport."""
        nodes = await self._registry.live_nodes()
        return {
            "sfuNodes": [
                {
                    "id": node.id,
                    "workers": node.workers,
                    "routers": node.routers,
                    "load": node.load,
                    "connected": self._registry.reachable(node.id),
                }
                for node in nodes
            ],
            "turn": {
                "status": self._turn.summary(),
                "checks": [check.to_json() for check in self._turn.checks],
            },
        }

    async def compliance(self) -> tuple[bool, dict[str, Any]]:
        """The chain since the newest signed checkpoint (read only, never the whole
        log), every checkpoint against its row, and the newest full walk's result
        (the periodic job's, or ``telemed audit verify``'s)."""
        now = await self._audit.verify(record=False)
        last_full = (await self._audit.latest()).get("full")
        ok = now.ok and (last_full is None or last_full["status"] == "ok")
        chain: dict[str, Any] = {
            "status": "ok" if ok else "broken",
            "entries": now.entries,
            "checkpoints": now.checkpoints,
            "lastFull": last_full,
        }
        if not now.ok:
            chain.update(firstBadId=now.first_bad_id, reason=now.reason)
        elif last_full is not None and not ok:
            chain.update(firstBadId=last_full["firstBadId"], reason=last_full["reason"])
        return ok, {"status": chain["status"], "auditChain": chain}
