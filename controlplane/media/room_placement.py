"""Placing a room: a router on the least-loaded live SFU node, and the room's record."""

from __future__ import annotations

import time

import structlog

from controlplane.media.room_state import RoomRecord, RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuNode, SfuRegistry
from controlplane.placement.sfu_client import SfuClient, SfuError, SfuUnavailable

log = structlog.get_logger(__name__)


class RoomPlacement:
    def __init__(self, state: RoomState, registry: SfuRegistry) -> None:
        self._state = state
        self._registry = registry

    async def place(self, room_id: str, call_type: str) -> RoomRecord:
        """Create the room's router and store the room.  The room lock is held."""
        try:
            node, client = await self._first_reachable()
            created = await client.request(
                "createRouter", {"profile": call_type, "appData": {"roomId": room_id}}
            )
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

    async def _first_reachable(self) -> tuple[SfuNode, SfuClient]:
        """The least-loaded node this instance can reach and trust (a node that is
        down or fails TLS verification is passed over, not the room's end)."""
        refused: SfuUnavailable | None = None
        for node in await self._registry.ranked_nodes():
            try:
                return node, await self._registry.client(node.id)
            except SfuUnavailable as exc:
                log.warning("sfu_node_passed_over", node_id=node.id, error=str(exc))
                refused = exc
        raise refused or SfuUnavailable("no SFU node is registered")
