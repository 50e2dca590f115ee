"""The join gate of signaling: a room token admits its holder only while the
token's session is active and names the holder in that role.  Joins, leaves and
refused signaling actions are audited against the room's session."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from controlplane.auth import RoomClaims
from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.session_store import JoinRow, SessionStore
from controlplane.clinical.session_types import MAX_DURATION
from schemas.errors import ErrorCode

_SESSIONS_KEPT = 20_000


@dataclass(frozen=True)
class GrantedJoin:
    """A join let through (media/ports.py ``JoinPass``)."""

    call_type: str
    session_id: str
    session: dict[str, Any]
    stored: Awaitable[Any]


class SessionJoinGate:
    def __init__(
        self, store: SessionStore, audit: AuditLog, max_duration: dict[str, int] | None = None
    ) -> None:
        self._store = store
        self._audit = audit
        self._max_duration = {**MAX_DURATION, **(max_duration or {})}
        # Room id -> session id: fixed for a room's life (one room per session), so
        # the entries of a leave, an admission or a refusal need no query for it.
        self._sessions: OrderedDict[str, str] = OrderedDict()

    async def _session_of(self, room_id: str) -> str | None:
        session_id = self._sessions.get(room_id)
        if session_id is None:
            session_id = await self._store.id_for_room(room_id)
            if session_id is not None:
                self._remember(room_id, session_id)
        return session_id

    def _remember(self, room_id: str, session_id: str) -> None:
        self._sessions[room_id] = session_id
        self._sessions.move_to_end(room_id)
        if len(self._sessions) > _SESSIONS_KEPT:
            self._sessions.popitem(last=False)

    def _summary(self, row: JoinRow) -> dict[str, Any]:
        """What the page's console shows: the session, how long it has run and how
        long it may (the call type's maximum duration)."""
        return {
            "sessionId": row.session_id,
            "sessionType": row.session_type,
            "elapsedSeconds": round(row.elapsed_seconds, 1),
            "maxDurationSeconds": self._max_duration.get(
                row.session_type, MAX_DURATION["consultation"]
            ),
        }

    async def authorize_join(self, claims: RoomClaims) -> GrantedJoin:
        """One read of the session; a refusal is audited before it is raised.  A
        join let through has its audit entry (and the session's activity clock)
        on the way to the database: ``JoinPass.stored`` is awaited before the
        join is answered (media/membership.py)."""
        actor = Actor(claims.participant_id, claims.role)
        row = await self._store.for_join(claims.room_id, claims.participant_id)
        session_id = row.session_id if row else None
        if row is None or row.role is None or row.role != claims.role:
            raise await self._audit.deny(
                actor,
                "room.join",
                ErrorCode.FORBIDDEN,
                "this token does not grant access to that consultation",
                resource_type="room",
                resource_id=claims.room_id,
                session_id=session_id,
                details={"reason": "not a participant", "jti": claims.token_id},
            )
        if row.status != "active":
            raise await self._audit.deny(
                actor,
                "room.join",
                ErrorCode.SESSION_EXPIRED,
                f"the consultation is {row.status}",
                resource_type="room",
                resource_id=claims.room_id,
                session_id=session_id,
                details={"reason": f"session {row.status}"},
            )
        self._remember(claims.room_id, row.session_id)
        entry = self._audit.enqueue(
            actor,
            "room.join",
            resource_type="room",
            resource_id=claims.room_id,
            session_id=row.session_id,
            details={"jti": claims.token_id},
        )
        stored = asyncio.gather(entry, self._store.touch(row.session_id))
        # A join that fails before it awaits this leaves no unread error behind.
        stored.add_done_callback(lambda f: f.cancelled() or f.exception())
        return GrantedJoin(row.session_type, row.session_id, self._summary(row), stored)

    def admission_entry(
        self, room_id: str, session_id: str, participant_id: str, role: str, state: str, by: str
    ) -> asyncio.Future[int]:
        """A participant's admission on arrival, queued in the order of arrivals:
        its own (``by`` itself, waiting) or the policy's (``by`` "policy")."""
        actor = Actor("policy", "system") if by == "policy" else Actor(participant_id, role)
        return self._audit.enqueue(
            actor,
            f"room.admission.{state}",
            resource_type="room",
            resource_id=room_id,
            session_id=session_id,
            details={"participant": participant_id},
        )

    async def record_leave(self, room_id: str, participant_id: str, role: str, reason: str) -> None:
        await self._audit.record(
            Actor(participant_id, role),
            "room.leave",
            resource_type="room",
            resource_id=room_id,
            session_id=await self._session_of(room_id),
            details={"reason": reason},
        )

    async def record_refusal(
        self, room_id: str, participant_id: str, role: str, event: str, code: str
    ) -> None:
        await self._audit.deny(
            Actor(participant_id, role),
            f"signaling.{event}",
            ErrorCode(code),
            "refused",
            resource_type="room",
            resource_id=room_id,
            session_id=await self._session_of(room_id),
        )

    async def record_admission(
        self, room_id: str, actor_id: str, actor_role: str, participant_id: str, state: str
    ) -> None:
        """A waiting-room change (a clinician's decision, or the policy's)."""
        await self._audit.record(
            Actor(actor_id, actor_role),
            f"room.admission.{state}",
            resource_type="room",
            resource_id=room_id,
            session_id=await self._session_of(room_id),
            details={"participant": participant_id},
        )
