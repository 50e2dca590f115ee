"""Settings from the environment: secrets, TURN and TLS settings are checked at
start, and template values are refused."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from controlplane.config import ConfigError, Settings

REQUIRED = {
    "TELEMED_JWT_SECRET": secrets.token_urlsafe(48),
    "SFU_SECRET": secrets.token_urlsafe(24),
    "DATABASE_URL": "postgresql://app@127.0.0.1/telemed",
    "TELEMED_DATA_KEYS": f"1:{base64.b64encode(os.urandom(32)).decode()}",
}
TURN = {"TELEMED_TURN_HOSTS": "turn.example.org", "TELEMED_TURN_SECRET": secrets.token_urlsafe(24)}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TELEMED_JWT_SECRET", "change-me-at-least-32-characters-long-secret", "placeholder"),
        ("TELEMED_JWT_SECRET", "short", "at least 32 characters"),
        ("TELEMED_JWT_SECRET", "ab" * 20, "too predictable"),
        ("SFU_SECRET", "change-me-at-least-16-characters", "placeholder"),
        ("SFU_SECRET", "s" * 24, "too predictable"),
        ("TELEMED_DATA_KEYS", "1:change-me-32-random-bytes-in-base64", "32-byte keys"),
        ("TELEMED_DATA_KEYS", f"1:{base64.b64encode(bytes(32)).decode()}", "not random"),
        ("DATABASE_URL", "postgresql://telemed_app:change-me@127.0.0.1/telemed", "placeholder"),
    ],
)
def test_template_and_weak_secrets_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        Settings.from_env({**REQUIRED, name: value})
    assert name in str(refused.value)
    assert value not in str(refused.value)  # the secret itself is never repeated


def test_generated_secrets_pass() -> None:
    for _ in range(20):  # random values, so more than one draw
        env = {
            **REQUIRED,
            "TELEMED_JWT_SECRET": secrets.token_urlsafe(48),
            "SFU_SECRET": secrets.token_urlsafe(24),
        }
        Settings.from_env(env)


def test_turn_hosts_need_a_secret_and_ports_in_range() -> None:
    with pytest.raises(ConfigError, match="TELEMED_TURN_SECRET"):
        Settings.from_env({**REQUIRED, "TELEMED_TURN_HOSTS": "turn.example.org"})
    with pytest.raises(ConfigError, match="placeholder"):
        Settings.from_env(
            {**REQUIRED, **TURN, "TELEMED_TURN_SECRET": "change-me-to-coturns-static-auth-secret"}
        )
    with pytest.raises(ConfigError, match="TELEMED_TURN_TLS_PORT"):
        Settings.from_env({**REQUIRED, **TURN, "TELEMED_TURN_TLS_PORT": "70000"})
    settings = Settings.from_env(
        {**REQUIRED, **TURN, "TELEMED_TURN_HOSTS": " a.example.org, b.example.org "}
    )
    assert settings.turn_hosts == ("a.example.org", "b.example.org")
    assert (settings.turn_port, settings.turn_tls_port) == (3478, 0)


def test_tls_needs_both_files_and_makes_the_public_url_https(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    with pytest.raises(ConfigError, match="go together"):
        Settings.from_env({**REQUIRED, "TELEMED_TLS_CERT": str(cert)})
    with pytest.raises(ConfigError, match="not a readable file"):
        Settings.from_env({**REQUIRED, "TELEMED_TLS_CERT": str(cert), "TELEMED_TLS_KEY": str(key)})
    cert.write_text("x")
    key.write_text("x")
    settings = Settings.from_env(
        {
            **REQUIRED,
            "TELEMED_TLS_CERT": str(cert),
            "TELEMED_TLS_KEY": str(key),
            "TELEMED_PORT": "8443",
        }
    )
    assert settings.public_url == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("name", "value"),
    [("TELEMED_EVENT_LOOP", "trio"), ("TELEMED_GC_YOUNG_THRESHOLD", "-1")],
)
def test_bad_runtime_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**REQUIRED, name: value})
