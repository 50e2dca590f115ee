"""What the media services need from outside, as protocols: a way to reach
connections (implemented by the Socket.IO layer) and the join gate (implemented
by the clinical sessions).  The media package imports neither."""

from __future__ import annotations

from collections.abc import Awaitable
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


class JoinPass(Protocol):
    """A join the gate let through."""

    @property
    def call_type(self) -> str: ...  # the session's type: the room's media profile

    @property
    def session_id(self) -> str: ...

    @property
    def session(self) -> dict[str, Any]: ...  # the console's clock, for the join answer

    @property
    def stored(self) -> Awaitable[Any]: ...  # the join's audit entry, committed


class JoinGate(Protocol):
    """Decides whether a token holder may join its room now; audits joins, leaves,
    admissions and refusals."""

    async def authorize_join(self, claims: RoomClaims) -> JoinPass: ...

    def admission_entry(
        self, room_id: str, session_id: str, participant_id: str, role: str, state: str, by: str
    ) -> Awaitable[Any]: ...

    async def record_leave(
        self, room_id: str, participant_id: str, role: str, reason: str
    ) -> None: ...

    async def record_refusal(
        self, room_id: str, participant_id: str, role: str, event: str, code: str
    ) -> None: ...

    async def record_admission(
        self, room_id: str, actor_id: str, actor_role: str, participant_id: str, state: str
    ) -> None: ...
