"""Room tokens: what is accepted and what is refused (pure logic)."""

from __future__ import annotations

import time

import jwt
import pytest

from controlplane.auth import TokenService
from schemas.errors import ApiError

SECRET = "s" * 48


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET, "telemed", "telemed-room", ttl=600)


def test_round_trip_keeps_identity_and_consultation(tokens: TokenService) -> None:
    token = tokens.mint(
        participant_id="dr-1",
        role="physician",
        room_id="c-1",
        call_type="emergency",
        display_name="Dr. One",
    )
    claims = tokens.verify(token)
    assert (claims.participant_id, claims.role, claims.room_id, claims.call_type) == (
        "dr-1",
        "physician",
        "c-1",
        "emergency",
    )
    assert claims.display_name == "Dr. One"
    assert claims.expires_at > time.time()


@pytest.mark.parametrize("bad", [None, "", 42, "x" * 5000, "a.b.c"])
def test_malformed_tokens_are_unauthorized(tokens: TokenService, bad: object) -> None:
    with pytest.raises(ApiError) as error:
        tokens.verify(bad)
    assert error.value.code == "UNAUTHORIZED"


def test_expired_token_is_session_expired(tokens: TokenService) -> None:
    token = tokens.mint(
        participant_id="p-1",
        role="patient",
        room_id="c-1",
        now=int(time.time()) - 1000,
        ttl=10,
    )
    with pytest.raises(ApiError) as error:
        tokens.verify(token)
    assert error.value.code == "SESSION_EXPIRED"


def test_other_secret_issuer_or_audience_is_unauthorized(tokens: TokenService) -> None:
    others = [
        TokenService("t" * 48, "telemed", "telemed-room", 600),
        TokenService(SECRET, "someone-else", "telemed-room", 600),
        TokenService(SECRET, "telemed", "another-audience", 600),
    ]
    for other in others:
        token = other.mint(participant_id="p-1", role="patient", room_id="c-1")
        with pytest.raises(ApiError) as error:
            tokens.verify(token)
        assert error.value.code == "UNAUTHORIZED"


def test_clinician_without_mfa_is_forbidden_patient_is_not(tokens: TokenService) -> None:
    doctor = tokens.mint(participant_id="dr-1", role="physician", room_id="c-1", mfa=False)
    with pytest.raises(ApiError) as error:
        tokens.verify(doctor)
    assert error.value.code == "FORBIDDEN"
    patient = tokens.mint(participant_id="p-1", role="patient", room_id="c-1", mfa=False)
    assert tokens.verify(patient).role == "patient"


def test_unknown_role_in_a_validly_signed_token_is_unauthorized(tokens: TokenService) -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "telemed",
            "aud": "telemed-room",
            "sub": "x",
            "role": "superuser",
            "consultation": "c-1",
            "iat": now,
            "exp": now + 60,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(ApiError) as error:
        tokens.verify(token)
    assert error.value.code == "UNAUTHORIZED"


@pytest.mark.parametrize("field", ["participant_id", "room_id"])
def test_mint_rejects_ids_outside_the_id_alphabet(tokens: TokenService, field: str) -> None:
    args = {"participant_id": "p-1", "room_id": "c-1", field: "has spaces/and slashes"}
    with pytest.raises(ValueError):
        tokens.mint(role="patient", **args)


def test_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError):
        TokenService("short", "telemed", "telemed-room", 600)
