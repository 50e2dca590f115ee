"""TURN servers a client may relay its media through, with short-lived
credentials in the TURN REST form coturn checks with ``use-auth-secret``:
username ``<expiry unix time>:<tag>``, password base64(HMAC-SHA1(secret,
username)).  Nothing is stored: coturn recomputes the password from the shared
secret and refuses the username once its expiry has passed.

The tag is an HMAC of the participant id, not the id itself: coturn logs
usernames, and its logs must not name anyone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnConfig:
    hosts: tuple[str, ...]
    secret: str
    port: int = 3478
    tls_port: int = 0  # > 0: also offer turns: (TLS over TCP) on this port
    ttl: int = 4 * 3600

    def urls(self) -> list[str]:
        urls: list[str] = []
        for host in self.hosts:
            name = f"[{host}]" if ":" in host else host
            urls.append(f"turn:{name}:{self.port}?transport=udp")
            urls.append(f"turn:{name}:{self.port}?transport=tcp")
            if self.tls_port:
                urls.append(f"turns:{name}:{self.tls_port}?transport=tcp")
        return urls


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class IceServers:
    """The ``iceServers`` of a transport ack: empty when no TURN server is configured."""

    def __init__(self, config: TurnConfig | None, clock: Callable[[], float] = time.time) -> None:
        self.config = config if config and config.hosts else None
        self._clock = clock

    def credentials(self, participant_id: str, ttl: int | None = None) -> tuple[str, str]:
        """(username, password) valid for ``ttl`` seconds (default: the configured lifetime)."""
        config = self._require()
        expiry = int(self._clock()) + (config.ttl if ttl is None else ttl)
        tag = hmac.new(config.secret.encode(), participant_id.encode(), hashlib.sha256)
        username = f"{expiry}:{tag.hexdigest()[:16]}"
        return username, turn_password(config.secret, username)

    def for_participant(self, participant_id: str) -> list[dict[str, Any]]:
        if self.config is None:
            return []
        username, password = self.credentials(participant_id)
        return [{"urls": self.config.urls(), "username": username, "credential": password}]

    def _require(self) -> TurnConfig:
        if self.config is None:
            raise RuntimeError("no TURN server is configured")
        return self.config
