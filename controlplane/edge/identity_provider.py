"""API tokens from an external identity provider (OpenID Connect): RS256/ES256
JWTs verified against the provider's JWKS, with its issuer and our audience.

The key set is fetched (PyJWT's JWKS client, in a thread) when a token names a key
id not yet known or the set is older than ``ttl``; an unknown key id refetches at
most every ``refresh_interval`` seconds, so made-up key ids cannot turn into a
flood of requests to the provider.  Only asymmetric algorithms are accepted here,
each with a key of its own type: a token cannot pick HS256 and be checked with a
public key as its secret.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import structlog

from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}


def decode_checked(
    token: str, key: Any, algorithm: str, audience: str, issuer: str
) -> dict[str, Any]:
    """The token's claims once its signature, audience, issuer and expiry hold."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(ErrorCode.SESSION_EXPIRED, "the access token has expired") from None
    except jwt.PyJWTError:
        raise ApiError(ErrorCode.UNAUTHORIZED, "the access token is invalid") from None
    return claims


class JwksVerifier:
    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        *,
        ttl: float = 300.0,
        refresh_interval: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self._client = jwt.PyJWKClient(jwks_url, cache_jwk_set=False, timeout=timeout)
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    @staticmethod
    def handles(token: str) -> bool:
        """The token is signed with one of the provider's algorithms."""
        try:
            return jwt.get_unverified_header(token).get("alg") in ALGORITHMS
        except jwt.PyJWTError:
            return False

    async def decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ApiError(ErrorCode.UNAUTHORIZED, "the access token is invalid") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS or not isinstance(kid, str):
            raise ApiError(ErrorCode.UNAUTHORIZED, "the access token is invalid")
        key = await self._key(kid)
        if key is None or key.key_type != _KEY_TYPES[algorithm]:
            raise ApiError(ErrorCode.UNAUTHORIZED, "the access token's signing key is unknown")
        return decode_checked(token, key.key, algorithm, self._audience, self._issuer)

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        if kid in self._keys and time.monotonic() - self._fetched_at < self._ttl:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = age >= self._ttl
            if (kid not in self._keys or stale) and age >= self._refresh_interval:
                await self._fetch()
            return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            jwk_set = await asyncio.to_thread(self._client.get_jwk_set, True)
        except jwt.PyJWKClientError as exc:
            log.warning("jwks_fetch_failed", error=type(exc).__name__)
            if not self._keys:
                raise ApiError(
                    ErrorCode.SERVICE_UNAVAILABLE, "the identity provider cannot be reached"
                ) from None
            return  # keep the keys we had
        self._keys = {
            key.key_id: key
            for key in jwk_set.keys
            if key.key_id and getattr(key, "public_key_use", None) in (None, "sig")
        }
        log.info("jwks_fetched", keys=len(self._keys))
