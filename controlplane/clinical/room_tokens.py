"""Room tokens: a participant of an *active* session gets a token for that
session's room only (refusals audited)."""

from __future__ import annotations

from typing import Any

from controlplane.auth import ApiClaims, TokenService
from controlplane.clinical.audit import AuditLog
from controlplane.clinical.session_access import actor_of
from controlplane.clinical.session_store import SessionStore
from schemas.errors import ErrorCode


class RoomTokens:
    def __init__(
        self, store: SessionStore, audit: AuditLog, tokens: TokenService, *, ttl: int
    ) -> None:
        self._store = store
        self._audit = audit
        self._tokens = tokens
        self._ttl = ttl

    async def issue(
        self, claims: ApiClaims, session_id: str, display_name: str = ""
    ) -> dict[str, Any]:
        actor = actor_of(claims)
        session = await self._store.load(session_id)
        if session is None or claims.subject not in session.participants:
            raise await self._audit.deny(
                actor,
                "room_token.issue",
                ErrorCode.NOT_FOUND,
                "session not found",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": "not a participant"},
            )
        if session.status != "active":
            raise await self._audit.deny(
                actor,
                "room_token.issue",
                ErrorCode.CONFLICT,
                f"the session is {session.status}, not active",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": session.status},
            )
        token = self._tokens.mint(
            participant_id=claims.subject,
            role=session.participants[claims.subject],
            room_id=session.room_id,
            call_type=session.session_type,
            display_name=display_name,
            ttl=self._ttl,
            mfa=claims.mfa,
        )
        await self._audit.record(
            actor,
            "room_token.issue",
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
        )
        return {"roomId": session.room_id, "token": token, "expiresIn": self._ttl}
