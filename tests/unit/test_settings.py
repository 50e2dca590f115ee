"""Settings from the environment: TURN and TLS settings are checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, Settings

REQUIRED = {
    "TELEMED_JWT_SECRET": "j" * 40,
    "SFU_SECRET": "s" * 20,
    "DATABASE_URL": "postgresql://app@127.0.0.1/telemed",
    "TELEMED_DATA_KEYS": "k1:AAAA",
}


def test_turn_hosts_need_a_secret_and_ports_in_range() -> None:
    with pytest.raises(ConfigError, match="TELEMED_TURN_SECRET"):
        Settings.from_env({**REQUIRED, "TELEMED_TURN_HOSTS": "turn.example.org"})
    with pytest.raises(ConfigError, match="TELEMED_TURN_TLS_PORT"):
        Settings.from_env(
            {
                **REQUIRED,
                "TELEMED_TURN_HOSTS": "turn.example.org",
                "TELEMED_TURN_SECRET": "t" * 20,
                "TELEMED_TURN_TLS_PORT": "70000",
            }
        )
    settings = Settings.from_env(
        {
            **REQUIRED,
            "TELEMED_TURN_HOSTS": " a.example.org, b.example.org ",
            "TELEMED_TURN_SECRET": "t" * 20,
        }
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
