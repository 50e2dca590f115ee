"""Placing a room: a router on the least-loaded live SFU node, and the room's record."""

from __future__ import annotations

import time
from typing import Any

import structlog

from controlplane.media.room_state import RoomRecord, RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuNode, SfuRegistry
from controlplane.placement.sfu_client import SfuError, SfuRequestError, SfuUnavailable

log = structlog.get_logger(__name__)


class RoomPlacement:
    def __init__(self, state: RoomState, registry: SfuRegistry) -> None:
        self._state = state
        self._registry = registry

    async def place(self, room_id: str, call_type: str) -> RoomRecord:
        """Create the room's router and store the room.  The room lock is held."""
        try:
            node, created = await self._create_router(room_id, call_type)
        except SfuError as exc:
            log.error("room_create_failed", room_id=room_id, error=str(exc))
            raise sfu_api_error(exc, "create room") from exc
        room = RoomRecord(
            roomId=room_id,
            nodeId=node.id,
            routerId=created["routerId"],
            callType=call_type,
            createdAt=time.time(),
            workerPid=int(created.get("workerPid") or 0),
        )
        await self._state.create_room(room)
        log.info("room_created", room_id=room_id, node_id=node.id, call_type=call_type)
        return room

    async def _create_router(self, room_id: str, call_type: str) -> tuple[SfuNode, Any]:
        """On the least-loaded node this instance can reach and trust (a node that is
        down, fails TLS verification or has just begun to drain is passed over, not
        the room's end)."""
        refused: SfuError | None = None
        for node in await self._registry.ranked_nodes():
            try:
                client = await self._registry.client(node.id)
                created = await client.request(
                    "createRouter", {"profile": call_type, "appData": {"roomId": room_id}}
                )
            except SfuUnavailable as exc:
                log.warning("sfu_node_passed_over", node_id=node.id, error=str(exc))
                refused = exc
                continue
            except SfuRequestError as exc:
                if exc.error_type != "DRAINING":
                    raise
                log.info("sfu_node_draining_passed_over", node_id=node.id)
                refused = exc
                continue
            return node, created
        raise refused or SfuUnavailable("no SFU node is registered")
