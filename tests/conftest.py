"""Shared fixtures: real Redis, a real SFU node (mediasoup) and a real control
plane process, started once per test session on loopback."""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from controlplane import local_services as ls
from controlplane.auth import TokenService
from controlplane.python_peer import MediaPeer, restrict_ice_host_addresses

# pymediasoup's extra "probator" receiver gets RTP probation padding and logs a
# VP8 decode warning per packet; real decoding is asserted through frame counts.
logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Stack:
    data_dir: Path
    redis_url: str
    sfu_secret: str
    jwt_secret: str
    sfu: ls.ManagedProcess
    control_plane: ls.ManagedProcess
    tokens: TokenService
    processes: list[ls.ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.control_plane.url

    def control_plane_env(self, **overrides: str) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "SFU_SECRET": self.sfu_secret,
            "TELEMED_JWT_SECRET": self.jwt_secret,
            "TELEMED_LOG_FORMAT": "json",
            "SFU_RPC_TIMEOUT": "5",
            **overrides,
        }

    def token(self, consultation: str, participant: str, role: str, **kwargs: object) -> str:
        return self.tokens.mint(
            participant_id=participant,
            role=role,
            consultation_id=consultation,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    restrict_ice_host_addresses(["127.0.0.1"])
    data_dir = Path(tempfile.mkdtemp(prefix="telemed-test-"))
    sfu_secret = secrets.token_urlsafe(24)
    jwt_secret = secrets.token_urlsafe(48)
    started: list[ls.ManagedProcess] = []
    try:
        redis = ls.start_redis(data_dir / "redis")
        started.append(redis)
        sfu = ls.start_sfu_node(
            data_dir,
            redis_url=redis.url,
            secret=sfu_secret,
            node_id="sfu-test-1",
            rtc_min_port=45000,
            rtc_max_port=45999,
        )
        started.append(sfu)
        env = {
            "REDIS_URL": redis.url,
            "SFU_SECRET": sfu_secret,
            "TELEMED_JWT_SECRET": jwt_secret,
            "TELEMED_LOG_FORMAT": "json",
            "SFU_RPC_TIMEOUT": "5",
        }
        control = ls.start_control_plane(data_dir, env)
        started.append(control)
        yield Stack(
            data_dir=data_dir,
            redis_url=redis.url,
            sfu_secret=sfu_secret,
            jwt_secret=jwt_secret,
            sfu=sfu,
            control_plane=control,
            tokens=TokenService(jwt_secret, "telemed", "telemed-room", 3600),
            processes=started,
        )
    finally:
        for process in reversed(started):
            process.stop()
        _keep_logs(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def _keep_logs(data_dir: Path) -> None:
    """Copy service logs to test-artifacts/ so a failed CI run can be read."""
    target = ARTIFACTS / "service-logs"
    target.mkdir(parents=True, exist_ok=True)
    for log in data_dir.rglob("*.log"):
        shutil.copy(log, target / log.name)


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(stack.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def peers(stack: Stack) -> AsyncIterator[list[MediaPeer]]:
    """Collects peers made by a test and closes them at its end."""
    made: list[MediaPeer] = []
    yield made
    for peer in made:
        await peer.close()


def consultation_id(prefix: str = "c") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"
