"""Placing a room: a router on the least-loaded live SFU node, and the room's record."""

from __future__ import annotations

import time

import structlog

from controlplane.media.room_state import RoomRecord, RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuRegistry
from controlplane.placement.sfu_client import SfuError

log = structlog.get_logger(__name__)


class RoomPlacement:
    def __init__(self, state: RoomState, registry: SfuRegistry) -> None:
        self._state = state
        self._registry = registry

    async def place(self, room_id: str, call_type: str) -> RoomRecord:
        """Create the room's router and store the room.  The room lock is held."""
        try:
            node = await self._registry.pick_node()
            client = await self._registry.client(node.id)
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
