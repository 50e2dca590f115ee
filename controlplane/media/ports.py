"""What the media services need from outside, as protocols: a way to reach
connections (implemented by the Socket.IO layer) and the join gate (implemented
by the clinical sessions).  The media package imports neither."""

from __future__ import annotations

from typing import Any, Protocol

from controlplane.auth import RoomClaims


class Notifier(Protocol):
    async def to_peer(self, sid: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_room(
        self, room_id: str, event: str, data: dict[str, Any], skip_sid: str | None = None
    ) -> None: ...

    async def enter_room(self, sid: str, room_id: str) -> None: ...

    async def leave_room(self, sid: str, room_id: str) -> None: ...

    async def disconnect(self, sid: str) -> None: ...


class JoinGate(Protocol):
    """Decides whether a token holder may join its room now; audits leaves and refusals."""

    async def authorize_join(self, claims: RoomClaims) -> str: ...

    async def session_summary(self, room_id: str) -> dict[str, Any] | None: ...

    async def record_leave(
        self, room_id: str, participant_id: str, role: str, reason: str
    ) -> None: ...

    async def record_refusal(
        self, room_id: str, participant_id: str, role: str, event: str, code: str
    ) -> None: ...

    async def record_admission(
        self, room_id: str, actor_id: str, actor_role: str, participant_id: str, state: str
    ) -> None: ...
