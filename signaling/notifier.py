"""Room-service notifications delivered over Socket.IO."""

from __future__ import annotations

from typing import Any

import socketio


class SocketIONotifier:
    """Implements controlplane.media.ports.Notifier on a python-socketio AsyncServer.

    With the Redis client manager, room broadcasts and per-sid emits reach sockets
    held by other control-plane instances too.
    """

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def to_peer(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self._sio.emit(event, data, to=sid)

    async def to_room(
        self, room_id: str, event: str, data: dict[str, Any], skip_sid: str | None = None
    ) -> None:
        await self._sio.emit(event, data, room=_sio_room(room_id), skip_sid=skip_sid)

    async def enter_room(self, sid: str, room_id: str) -> None:
        await self._sio.enter_room(sid, _sio_room(room_id))

    async def leave_room(self, sid: str, room_id: str) -> None:
        await self._sio.leave_room(sid, _sio_room(room_id))

    async def disconnect(self, sid: str) -> None:
        await self._sio.disconnect(sid)


def _sio_room(room_id: str) -> str:
    return f"consultation:{room_id}"
