"""Room tokens: signed JWTs (HS256) naming one consultation and one participant.

Claims: ``sub`` participant id, ``role`` (physician, patient, coordinator, admin),
``consultation`` the room id (its wire name; the Python code says ``room_id``),
``callType``, ``name`` display name the participant may be shown under, ``amr``
authentication methods (a clinician's token must include ``mfa``),
``iat``/``exp``/``iss``/``aud``/``jti``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from controlplane.edge.identity_provider import JwksVerifier, decode_checked
from controlplane.media.profiles import CALL_TYPES
from schemas.errors import ApiError, ErrorCode
from schemas.ids import is_valid_id

ROLES = (
    "physician",
    "patient",
    "coordinator",
    "admin",
    "nurse",
    "specialist",
    "interpreter",
    "companion",
)
# Who treats: may admit from the waiting room; licence-checked when added.
CLINICIAN_ROLES = frozenset({"physician", "nurse", "specialist"})
# Roles that act as clinical or administrative staff and must have used MFA.
MFA_ROLES = frozenset({"physician", "nurse", "specialist", "coordinator", "admin"})
# Staff act for one clinic: their API tokens must name it (claim ``clinic``).
CLINIC_ROLES = frozenset({"coordinator", "admin"})
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class ApiClaims:
    """Identity behind a REST call (``aud`` = the API audience)."""

    subject: str
    role: str
    mfa: bool
    expires_at: int
    token_id: str
    clinic: str | None = None  # coordinators and admins: the clinic they act for
    # A room token used on the few endpoints that take one (the page's console):
    # it reaches its own consultation's session only.
    room_id: str | None = None


@dataclass(frozen=True)
class RoomClaims:
    participant_id: str
    role: str
    room_id: str
    call_type: str
    display_name: str
    expires_at: int
    token_id: str


class TokenService:
    def __init__(
        self,
        secret: str,
        issuer: str,
        audience: str,
        ttl: int,
        api_audience: str = "telemed-api",
        identity_provider: JwksVerifier | None = None,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("JWT secret must be at least 32 characters")
        if api_audience == audience:
            raise ValueError("room and API tokens need different audiences")
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._api_audience = api_audience
        self._ttl = ttl
        self._identity_provider = identity_provider

    def mint(
        self,
        *,
        participant_id: str,
        role: str,
        room_id: str,
        call_type: str = "consultation",
        display_name: str = "",
        mfa: bool | None = None,
        ttl: int | None = None,
        now: int | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if call_type not in CALL_TYPES:
            raise ValueError(f"unknown call type {call_type!r}")
        for label, value in (
            ("participant id", participant_id),
            ("room id", room_id),
        ):
            if not is_valid_id(value):
                raise ValueError(f"invalid {label}")
        issued = int(time.time()) if now is None else now
        with_mfa = role in MFA_ROLES if mfa is None else mfa
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": participant_id,
            "role": role,
            "consultation": room_id,
            "callType": call_type,
            "name": display_name[:80],
            "amr": ["pwd", "mfa"] if with_mfa else ["pwd"],
            "iat": issued,
            "exp": issued + (self._ttl if ttl is None else ttl),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def mint_api(
        self,
        *,
        subject: str,
        role: str,
        mfa: bool | None = None,
        ttl: int = 3600,
        now: int | None = None,
        clinic: str | None = None,
    ) -> str:
        """An access token for the REST API (a different audience from room tokens)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if not is_valid_id(subject) or (clinic is not None and not is_valid_id(clinic)):
            raise ValueError("invalid subject or clinic")
        issued = int(time.time()) if now is None else now
        with_mfa = role in MFA_ROLES if mfa is None else mfa
        claims = {
            "iss": self._issuer,
            "aud": self._api_audience,
            "sub": subject,
            "role": role,
            "amr": ["pwd", "mfa"] if with_mfa else ["pwd"],
            "iat": issued,
            "exp": issued + ttl,
            "jti": secrets.token_hex(8),
            **({"clinic": clinic} if clinic else {}),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    async def verify_api_async(self, token: object) -> ApiClaims:
        """An API token from the identity provider (RS256/ES256, its JWKS) when one
        is configured and the token is signed that way; else a locally minted one."""
        provider = self._identity_provider
        if provider is not None and isinstance(token, str) and len(token) <= 4096:
            if provider.handles(token):
                return self._api_claims(await provider.decode(token))
        return self.verify_api(token)

    def verify_api(self, token: object) -> ApiClaims:
        """A locally minted (HS256) API token."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise ApiError(ErrorCode.UNAUTHORIZED, "a bearer token is required")
        claims = decode_checked(token, self._secret, _ALGORITHM, self._api_audience, self._issuer)
        return self._api_claims(claims)

    @staticmethod
    def _api_claims(claims: dict[str, Any]) -> ApiClaims:
        """Role, MFA and clinic rules, the same whoever issued the token."""
        role, subject = claims.get("role"), claims.get("sub")
        if role not in ROLES or not isinstance(subject, str) or not is_valid_id(subject):
            raise ApiError(ErrorCode.UNAUTHORIZED, "the access token is invalid")
        amr = claims.get("amr") or []
        mfa = isinstance(amr, list) and "mfa" in amr
        if role in MFA_ROLES and not mfa:
            raise ApiError(
                ErrorCode.FORBIDDEN, "clinician tokens require multi-factor authentication"
            )
        clinic = claims.get("clinic")
        if role in CLINIC_ROLES and not (isinstance(clinic, str) and is_valid_id(clinic)):
            raise ApiError(ErrorCode.FORBIDDEN, "staff tokens must name the clinic they act for")
        return ApiClaims(
            subject=subject,
            role=role,
            mfa=mfa,
            expires_at=int(claims["exp"]),
            token_id=str(claims.get("jti", "")),
            clinic=clinic if role in CLINIC_ROLES else None,
        )

    def verify_room_for_api(self, token: object) -> ApiClaims:
        """A room token as REST credentials, scoped to its room's session."""
        room = self.verify(token)
        return ApiClaims(
            subject=room.participant_id,
            role=room.role,
            mfa=room.role in MFA_ROLES,  # verify() refused a clinician's without MFA
            expires_at=room.expires_at,
            token_id=room.token_id,
            room_id=room.room_id,
        )

    def verify(self, token: object) -> RoomClaims:
        """Decode and check a room token; raises ApiError with a client-safe code."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise ApiError(ErrorCode.UNAUTHORIZED, "a room token is required")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(ErrorCode.SESSION_EXPIRED, "the room token has expired") from None
        except jwt.PyJWTError:
            raise ApiError(ErrorCode.UNAUTHORIZED, "the room token is invalid") from None
        role = claims.get("role")
        consultation = claims.get("consultation")
        subject = claims.get("sub")
        call_type = claims.get("callType", "consultation")
        if (
            role not in ROLES
            or not isinstance(consultation, str)
            or not is_valid_id(consultation)
            or not isinstance(subject, str)
            or not is_valid_id(subject)
            or call_type not in CALL_TYPES
        ):
            raise ApiError(ErrorCode.UNAUTHORIZED, "the room token is invalid")
        amr = claims.get("amr") or []
        if role in MFA_ROLES and (not isinstance(amr, list) or "mfa" not in amr):
            raise ApiError(
                ErrorCode.FORBIDDEN, "clinician tokens require multi-factor authentication"
            )
        name = claims.get("name")
        return RoomClaims(
            participant_id=subject,
            role=role,
            room_id=consultation,
            call_type=call_type,
            display_name=name if isinstance(name, str) else "",
            expires_at=int(claims["exp"]),
            token_id=str(claims.get("jti", "")),
        )
