"""A session's participants beyond its physician and patient (issue 13): another
physician, a nurse or a specialist (each licence-checked like the physician; a
physician also for the session's specialty), an interpreter, a companion (a
family member or carer: needs the patient's active ``companion`` consent).

Only the session's physician or a coordinator of its clinic adds or removes
them; the patient and the session's physician cannot be removed.  Clinicians per
session are limited by call type (an emergency takes up to 8), everyone by the
room's size.  An interpreter or companion has no account: adding them answers a
room token for them (the invitation); clinicians get their own token with their
own (MFA) login.  A participant removed while in the room is put out of it at
once, and no token of theirs lets them back.  Everything is audited.
"""

from __future__ import annotations

from typing import Any, Protocol

from controlplane.auth import CLINICIAN_ROLES, ApiClaims, TokenService
from controlplane.clinical.audit import AuditLog
from controlplane.clinical.consents import ConsentStore
from controlplane.clinical.licences import LicenceGate
from controlplane.clinical.session_access import SessionAccess, actor_of, participant_or_staff
from controlplane.clinical.session_store import SessionRow, SessionStore
from schemas.errors import ApiError, ErrorCode

CLINICIAN_LIMITS = {"emergency": 8}
DEFAULT_CLINICIAN_LIMIT = 3
INVITED_ROLES = frozenset({"interpreter", "companion"})


class RoomExpulsion(Protocol):
    """Puts a participant out of a live room (media/waiting_room.py)."""

    async def expel(self, room_id: str, participant_id: str, reason: str) -> bool: ...


def clinician_limit(session_type: str) -> int:
    return CLINICIAN_LIMITS.get(session_type, DEFAULT_CLINICIAN_LIMIT)


def _may_manage(claims: ApiClaims, session: SessionRow) -> bool:
    return claims.subject == session.physician_id or (
        claims.role == "coordinator" and claims.clinic == session.clinic_id
    )


class SessionParticipants:
    def __init__(
        self,
        store: SessionStore,
        access: SessionAccess,
        audit: AuditLog,
        licences: LicenceGate,
        consents: ConsentStore,
        tokens: TokenService,
        rooms: RoomExpulsion,
        *,
        token_ttl: int,
        max_participants: int,
    ) -> None:
        self._store = store
        self._access = access
        self._audit = audit
        self._licences = licences
        self._consents = consents
        self._tokens = tokens
        self._rooms = rooms
        self._ttl = token_ttl
        self._max = max_participants

    async def listing(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        await self._access.visible(claims, session_id, "participant.list", participant_or_staff)
        return {"participants": await self._store.participant_list(session_id)}

    async def add(
        self, claims: ApiClaims, session_id: str, participant_id: str, role: str, display_name: str
    ) -> dict[str, Any]:
        session = await self._managed(claims, session_id, "participant.add")
        if session.status in ("ended", "cancelled"):
            raise ApiError(ErrorCode.CONFLICT, f"the session is {session.status}")
        if participant_id in session.participants:
            raise ApiError(ErrorCode.CONFLICT, "already a participant of this session")
        if len(session.participants) >= self._max:
            raise await self._refuse(claims, session, "participant.add", "the room is full")
        if role in CLINICIAN_ROLES:
            clinicians = sum(1 for r in session.participants.values() if r in CLINICIAN_ROLES)
            if clinicians >= clinician_limit(session.session_type):
                raise await self._refuse(
                    claims,
                    session,
                    "participant.add",
                    f"a {session.session_type} session takes at most "
                    f"{clinician_limit(session.session_type)} clinicians",
                )
            specialty = session.specialty if role == "physician" else None
            await self._licences.require(
                actor_of(claims), participant_id, specialty, "participant.add", session.id
            )
        if role == "companion" and not await self._consents.active(session.patient_id, "companion"):
            raise await self._refuse(
                claims,
                session,
                "participant.add",
                "the patient has not consented to a companion",
                ErrorCode.COMPLIANCE_VIOLATION,
            )
        added = await self._store.add_participant(session.id, participant_id, role, claims.subject)
        if added is None:
            raise ApiError(ErrorCode.CONFLICT, "already a participant of this session")
        await self._audit.record(
            actor_of(claims),
            "participant.add",
            resource_type="session",
            resource_id=session.id,
            session_id=session.id,
            details={"participant": participant_id, "role": role},
        )
        token = None
        if role in INVITED_ROLES and session.status == "active":
            minted = self._tokens.mint(
                participant_id=participant_id,
                role=role,
                room_id=session.room_id,
                call_type=session.session_type,
                display_name=display_name,
                ttl=self._ttl,
            )
            token = {"roomId": session.room_id, "token": minted, "expiresIn": self._ttl}
        return {**added, "roomToken": token}

    async def remove(
        self, claims: ApiClaims, session_id: str, participant_id: str
    ) -> dict[str, Any]:
        session = await self._managed(claims, session_id, "participant.remove")
        if participant_id in (session.patient_id, session.physician_id):
            raise ApiError(
                ErrorCode.CONFLICT, "the session's patient and physician cannot be removed"
            )
        if not await self._store.remove_participant(session.id, participant_id):
            raise ApiError(ErrorCode.NOT_FOUND, "not a participant of this session")
        expelled = await self._rooms.expel(session.room_id, participant_id, "removed")
        await self._audit.record(
            actor_of(claims),
            "participant.remove",
            resource_type="session",
            resource_id=session.id,
            session_id=session.id,
            details={"participant": participant_id, "wasInRoom": expelled},
        )
        return {"participantId": participant_id, "removed": True, "wasInRoom": expelled}

    async def _managed(self, claims: ApiClaims, session_id: str, action: str) -> SessionRow:
        return await self._access.guarded(
            claims,
            session_id,
            action,
            _may_manage,
            "only the session's physician or a coordinator of its clinic may change who takes part",
        )

    async def _refuse(
        self,
        claims: ApiClaims,
        session: SessionRow,
        action: str,
        message: str,
        code: ErrorCode = ErrorCode.CONFLICT,
    ) -> ApiError:
        return await self._audit.deny(
            actor_of(claims),
            action,
            code,
            message,
            resource_type="session",
            resource_id=session.id,
            session_id=session.id,
            details={"reason": message[:80]},
        )
