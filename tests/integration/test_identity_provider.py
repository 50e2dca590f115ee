"""Clinician API tokens from an external identity provider: RS256 and ES256 JWTs
verified against a JWKS served by a real HTTP server (keys generated here), with
issuer, audience, expiry and MFA checked; the development HS256 tokens still work."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import Stack
from tests.fault_injection import Instance

pytestmark = pytest.mark.integration

ISSUER = "https://idp.clinic.example/realms/telemed"
AUDIENCE = "telemed-api"


def base64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass
class IdentityProvider:
    """A JWKS endpoint on loopback and the private keys behind it."""

    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids in the JWKS
    fetches: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    def add_key(self, kid: str, kind: str = "rsa", publish: bool = True) -> None:
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            public = self.keys[kid].public_key()
            algorithm = (
                jwt.algorithms.RSAAlgorithm
                if isinstance(public, rsa.RSAPublicKey)
                else jwt.algorithms.ECAlgorithm
            )
            jwk = json.loads(algorithm.to_jwk(public))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "dr-idp",
            "role": "physician",
            "amr": ["pwd", "otp", "mfa"],
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        algorithm = "RS256" if isinstance(self.keys[kid], rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, self.keys[kid], algorithm=algorithm, headers={"kid": kid})

    async def start(self) -> None:
        async def serve(_request: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response(self.jwks())

        app = web.Application()
        app.router.add_get("/certs", serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/certs"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add_key("rsa-1")
    provider.add_key("ec-1", "ec")
    await provider.start()
    yield provider
    if provider.runner is not None:
        await provider.runner.cleanup()


async def call(url: str, token: str) -> tuple[int, str | None]:
    """GET health/servers (coordinators and admins) with ``token``."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{url}/api/telemedicine/health/servers",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        body = await response.json(content_type=None)
        return response.status, (body.get("error") or {}).get("code")


def staff(**claims: Any) -> dict[str, Any]:
    return {"sub": "coord-idp", "role": "coordinator", "clinic": "clinic-1", **claims}


async def test_provider_tokens_are_verified_against_its_jwks(
    stack: Stack, instance: Callable[..., Instance], idp: IdentityProvider
) -> None:
    cp = instance(TELEMED_OIDC_JWKS_URL=idp.url, TELEMED_OIDC_ISSUER=ISSUER)
    assert await call(cp.url, idp.token("rsa-1", **staff())) == (200, None)
    assert await call(cp.url, idp.token("ec-1", **staff(role="admin"))) == (200, None)
    # A physician may not read server health, but is authenticated (403, not 401).
    assert await call(cp.url, idp.token("rsa-1")) == (403, "FORBIDDEN")
    # Locally minted development tokens keep working beside the provider's.
    local = stack.tokens.mint_api(subject="coord-1", role="coordinator", clinic="clinic-1")
    assert await call(cp.url, local) == (200, None)

    refused = {
        "no mfa": idp.token("rsa-1", **staff(amr=["pwd"])),
        "other issuer": idp.token("rsa-1", **staff(iss="https://evil.example")),
        "other audience": idp.token("rsa-1", **staff(aud="another-app")),
        "no expiry": idp.token("rsa-1", **staff(exp=None)),
    }
    assert await call(cp.url, refused["no mfa"]) == (403, "FORBIDDEN")
    for reason in ("other issuer", "other audience", "no expiry"):
        assert await call(cp.url, refused[reason]) == (401, "UNAUTHORIZED"), reason
    expired = idp.token("rsa-1", **staff(iat=int(time.time()) - 900, exp=int(time.time()) - 60))
    assert await call(cp.url, expired) == (401, "SESSION_EXPIRED")


async def test_forged_signatures_and_algorithm_confusion_are_refused(
    instance: Callable[..., Instance], idp: IdentityProvider
) -> None:
    cp = instance(TELEMED_OIDC_JWKS_URL=idp.url, TELEMED_OIDC_ISSUER=ISSUER)
    # Signed by a key the provider never published, under a published kid.
    idp.add_key("rogue", publish=False)
    forged = jwt.encode(
        {**jwt.decode(idp.token("rsa-1", **staff()), options={"verify_signature": False})},
        idp.keys["rogue"],
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )
    assert await call(cp.url, forged) == (401, "UNAUTHORIZED")
    # An ES256 header on an RSA kid, and an unknown kid.
    mismatched = jwt.encode(
        jwt.decode(idp.token("rsa-1", **staff()), options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "rsa-1"},
    )
    assert await call(cp.url, mismatched) == (401, "UNAUTHORIZED")
    assert await call(cp.url, idp.token("rogue", **staff())) == (401, "UNAUTHORIZED")
    # HS256 with the provider's public key as the "secret": checked as a local
    # token (our own secret), so refused.
    public_pem = (
        idp.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(idp.token("rsa-1", **staff()), options={"verify_signature": False})
    signing_input = b".".join(
        base64url(json.dumps(part).encode())
        for part in ({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims)
    )
    mac = base64url(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    confused = (signing_input + b"." + mac).decode()
    assert await call(cp.url, confused) == (401, "UNAUTHORIZED")
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})
    assert await call(cp.url, unsigned) == (401, "UNAUTHORIZED")


async def test_a_rotated_key_is_fetched_and_unknown_kids_cannot_flood_the_provider(
    instance: Callable[..., Instance], idp: IdentityProvider
) -> None:
    cp = instance(TELEMED_OIDC_JWKS_URL=idp.url, TELEMED_OIDC_ISSUER=ISSUER)
    assert await call(cp.url, idp.token("rsa-1", **staff())) == (200, None)
    fetched = idp.fetches
    claims = jwt.decode(idp.token("rsa-1", **staff()), options={"verify_signature": False})
    for i in range(20):
        made_up = jwt.encode(claims, idp.keys["rsa-1"], algorithm="RS256", headers={"kid": f"x{i}"})
        assert await call(cp.url, made_up) == (401, "UNAUTHORIZED")
    # Twenty made-up key ids within seconds: at most one refetch.
    assert idp.fetches - fetched <= 1, idp.fetches - fetched
    # The provider rotates: a new key appears; once the refetch interval (10 s)
    # has passed, tokens signed with it are accepted (without a restart).
    idp.add_key("rsa-2")
    token = idp.token("rsa-2", **staff())
    # Within the refetch interval of the last fetch: not known yet.
    assert await call(cp.url, token) == (401, "UNAUTHORIZED")
    await asyncio.sleep(10.5)
    result = await call(cp.url, token)
    assert result == (200, None)
