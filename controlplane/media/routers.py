"""A room's router on an SFU node: placing it, reaching it, closing it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from controlplane.media.participants import Participant
from controlplane.media.room_failures import RoomFailures
from controlplane.media.room_placement import RoomPlacement
from controlplane.media.room_state import RoomRecord, RoomState
from controlplane.media.sfu_errors import sfu_api_error
from controlplane.placement.registry import SfuRegistry
from controlplane.placement.sfu_client import SfuClient, SfuError
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


# Routers whose capabilities one instance keeps (the least recently used go first).
CAPABILITIES_KEPT = 4096


class RoomRouters:
    def __init__(
        self,
        state: RoomState,
        registry: SfuRegistry,
        failures: RoomFailures,
        placement: RoomPlacement,
    ) -> None:
        self._state = state
        self._registry = registry
        self._failures = failures
        self._placement = placement
        self._capabilities: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by router id

    async def of(self, participant: Participant) -> tuple[RoomRecord, SfuClient]:
        """The participant's room and an RPC client of the node that holds its router."""
        room = await self._state.get_room(participant.room_id)
        if room is None:
            raise ApiError(ErrorCode.NOT_FOUND, "the consultation room is closed")
        try:
            client = await self._registry.client(room.nodeId)
        except SfuError as exc:
            raise sfu_api_error(exc, "connect") from exc
        return room, client

    async def client_of(self, room: RoomRecord) -> SfuClient:
        """An RPC client of the node that holds the room's router."""
        return await self._registry.client(room.nodeId)

    async def call(
        self, participant: Participant, method: str, params: dict[str, Any], action: str
    ) -> tuple[RoomRecord, Any]:
        """One request to the node of the participant's room: (room, result); an SFU
        failure becomes the error code clients see."""
        room, client = await self.of(participant)
        try:
            return room, await client.request(method, params)
        except SfuError as exc:
            raise sfu_api_error(exc, action) from exc

    async def create_owned(
        self,
        client: SfuClient,
        method: str,
        params: dict[str, Any],
        action: str,
        *,
        id_key: str,
        close_method: str,
        still_joined: Callable[[], bool],
    ) -> dict[str, Any]:
        """Create an object for a participant on the SFU (``method``); if the
        participant left while it was being made, close it again and refuse, so the
        SFU holds nothing the room state does not know."""
        try:
            created: dict[str, Any] = await client.request(method, params)
        except SfuError as exc:
            raise sfu_api_error(exc, action) from exc
        await self.close_if_left(client, close_method, {id_key: created[id_key]}, still_joined)
        return created

    @staticmethod
    async def close_if_left(
        client: SfuClient,
        close_method: str,
        params: dict[str, Any],
        still_joined: Callable[[], bool],
    ) -> None:
        """An object was just made for a participant: if it left meanwhile, close
        the object again and refuse (NOT_JOINED)."""
        if still_joined():
            return
        try:
            await client.request(close_method, params)
        except SfuError:
            pass  # its transport or router is gone already
        raise ApiError(ErrorCode.NOT_JOINED, "left the consultation")

    async def ensure(self, room_id: str, call_type: str) -> RoomRecord:
        """The room, its router created on the least-loaded SFU node if needed.

        Must be called with the room lock held.
        """
        room = await self._state.get_room(room_id)
        if room is not None:
            # A node this instance holds a live RPC connection to is alive (even if
            # its heartbeat key expired during a Redis pause and is about to be
            # back): asked first, it spares a read of the registry per join.
            if self._registry.reachable(room.nodeId):
                return room
            if room.nodeId in {node.id for node in await self._registry.live_nodes()}:
                return room
            # The node that held the room is gone: its router died with it.
            log.warning("room_node_gone", room_id=room_id, node_id=room.nodeId)
            await self._failures.fail_room(room_id)
        return await self._placement.place(room_id, call_type)

    def known_capabilities(self, router_id: str) -> dict[str, Any] | None:
        """The router's RTP capabilities if this instance has them already."""
        return self._capabilities.get(router_id)

    async def capabilities(self, room: RoomRecord) -> dict[str, Any]:
        """The router's RTP capabilities.  They are fixed when a router is made (a
        room made again gets a new router id), so they are kept here: a join or a
        ``getRouterRtpCapabilities`` costs no request to the node once known."""
        cached = self._capabilities.get(room.routerId)
        if cached is not None:
            self._capabilities.move_to_end(room.routerId)
            return cached
        try:
            client = await self._registry.client(room.nodeId)
            result = await client.request("getRouterRtpCapabilities", {"routerId": room.routerId})
        except SfuError as exc:
            raise sfu_api_error(exc, "get capabilities") from exc
        capabilities: dict[str, Any] = result["rtpCapabilities"]
        self._capabilities[room.routerId] = capabilities
        if len(self._capabilities) > CAPABILITIES_KEPT:
            self._capabilities.popitem(last=False)
        return capabilities

    async def close(self, room: RoomRecord) -> None:
        """Close the router and drop the room's live state."""
        try:
            client = await self._registry.client(room.nodeId)
            await client.request("closeRouter", {"routerId": room.routerId})
        except SfuError as exc:
            log.warning("close_router_failed", room_id=room.roomId, error=str(exc))
        await self._state.delete_room(room.roomId)
        log.info("room_closed", room_id=room.roomId)

    async def close_participant_media(self, room: RoomRecord, participant_id: str) -> None:
        """Close every transport of a participant (its producers and consumers go with them)."""
        transports = await self._state.transports(room.roomId, participant_id)
        if not transports:
            return
        try:
            client = await self._registry.client(room.nodeId)
        except SfuError:
            return  # the node is gone; its transports went with it
        for transport_id in transports:
            try:
                await client.request("closeTransport", {"transportId": transport_id})
            except SfuError as exc:
                log.warning("close_transport_failed", room_id=room.roomId, error=str(exc))
