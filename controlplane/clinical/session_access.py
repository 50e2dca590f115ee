"""Who may see and act on a session.

- read: the session's participants, coordinators and admins of its clinic;
- quality detail: coordinators and admins of its clinic, and the session's physician;
- clinical records: the session's physician and patient;
- start / end: the session's physician or a coordinator of its clinic.
Whoever may not see a session gets NOT_FOUND (existence does not leak), except
on recordings, which answer FORBIDDEN to a caller who may not act on an existing
one (``guarded``; their ids are random UUIDs, which a caller cannot guess); every
refusal is audited.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.auth import ApiClaims
from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.session_store import SessionRow, SessionStore
from schemas.errors import ApiError, ErrorCode

Rule = Callable[[ApiClaims, SessionRow], bool]


def in_scope(claims: ApiClaims, session: SessionRow | None) -> SessionRow | None:
    """A room token reaches its own consultation's session only."""
    if session is not None and claims.room_id is not None and session.room_id != claims.room_id:
        return None
    return session


def actor_of(claims: ApiClaims) -> Actor:
    return Actor(claims.subject, claims.role)


def clinic_staff(claims: ApiClaims, session: SessionRow) -> bool:
    """A coordinator or admin of the session's clinic."""
    return claims.role in ("coordinator", "admin") and claims.clinic == session.clinic_id


def participant_or_staff(claims: ApiClaims, session: SessionRow) -> bool:
    return clinic_staff(claims, session) or claims.subject in session.participants


def staff_or_physician(claims: ApiClaims, session: SessionRow) -> bool:
    return clinic_staff(claims, session) or claims.subject == session.physician_id


def physician_or_patient(claims: ApiClaims, session: SessionRow) -> bool:
    return claims.subject in (session.physician_id, session.patient_id)


class SessionAccess:
    def __init__(self, store: SessionStore, audit: AuditLog) -> None:
        self._store = store
        self._audit = audit

    async def visible(
        self, claims: ApiClaims, session_id: str, action: str, rule: Rule
    ) -> SessionRow:
        """The session if ``rule`` lets this caller see it; else an audited NOT_FOUND."""
        session = in_scope(claims, await self._store.load(session_id))
        if session is None or not rule(claims, session):
            raise await self._audit.deny(
                actor_of(claims),
                action,
                ErrorCode.NOT_FOUND,
                "session not found",
                resource_type="session",
                resource_id=session_id,
                session_id=session_id,
                details={"reason": "missing" if session is None else "no access"},
            )
        return session

    async def guarded(
        self, claims: ApiClaims, session_id: str, action: str, rule: Rule, message: str
    ) -> SessionRow:
        """The session if ``rule`` lets this caller act on it; an audited NOT_FOUND
        when it does not exist, FORBIDDEN (with ``message``) when it does."""
        session = in_scope(claims, await self._store.load(session_id))
        if session is None:
            return await self.visible(claims, session_id, action, rule)  # NOT_FOUND
        if not rule(claims, session):
            raise await self.forbid(claims, action, message, session.id)
        return session

    async def session(self, session_id: str) -> SessionRow | None:
        """The session, for the system's own actions (no caller to check)."""
        return await self._store.load(session_id)

    async def readable(self, claims: ApiClaims, session_id: str, action: str) -> SessionRow:
        return await self.visible(claims, session_id, action, participant_or_staff)

    async def for_staff(self, claims: ApiClaims, session_id: str) -> SessionRow:
        return await self.visible(claims, session_id, "metrics.quality", staff_or_physician)

    async def for_records(self, claims: ApiClaims, session_id: str, action: str) -> SessionRow:
        return await self.visible(claims, session_id, action, physician_or_patient)

    async def require_physician_or_coordinator(
        self, claims: ApiClaims, session: SessionRow, action: str
    ) -> None:
        if claims.subject == session.physician_id or (
            claims.role == "coordinator" and claims.clinic == session.clinic_id
        ):
            return
        verb = action.split(".")[1]
        raise await self._audit.deny(
            actor_of(claims),
            action,
            ErrorCode.FORBIDDEN,
            f"only the session's physician or a coordinator may {verb} it",
            resource_type="session",
            resource_id=session.id,
            session_id=session.id,
            details={"reason": claims.role},
        )

    async def forbid(
        self, claims: ApiClaims, action: str, message: str, session_id: str | None = None
    ) -> ApiError:
        """An audited FORBIDDEN for an action the caller's role does not allow."""
        return await self._audit.deny(
            actor_of(claims),
            action,
            ErrorCode.FORBIDDEN,
            message,
            resource_type="session",
            resource_id=session_id,
            session_id=session_id,
            details={"reason": claims.role},
        )
