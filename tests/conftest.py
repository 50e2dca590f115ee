"""Shared fixtures: real Redis, PostgreSQL, an SFU node (mediasoup), a TURN
server (coturn) and a control plane process, started once per test session on
loopback."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from controlplane.auth import TokenService
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.session_types import SESSION_TYPES
from controlplane.devstack import services as ls
from controlplane.devstack.coturn import start_coturn
from telemed_client import MediaPeer, restrict_ice_host_addresses
from tests.fault_injection import Instance
from tests.network_namespace import ephemeral_ports_kept_out_of

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
    database_url: str = ""
    database_admin_url: str = ""
    data_keys: str = ""
    turn_secret: str = ""
    turn_port: int = 0
    processes: list[ls.ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.control_plane.url

    def control_plane_env(self, **overrides: str) -> dict[str, str]:
        return _control_plane_env(
            self.redis_url,
            self.sfu_secret,
            self.jwt_secret,
            self.database_url,
            self.database_admin_url,
            self.data_keys,
            **{**self.turn_env(), **overrides},
        )

    @property
    def turn(self) -> ls.ManagedProcess:
        return next(p for p in self.processes if p.name == "coturn")

    def turn_env(self, host: str = "127.0.0.1") -> dict[str, str]:
        return {
            "TELEMED_TURN_HOSTS": host,
            "TELEMED_TURN_PORT": str(self.turn_port),
            "TELEMED_TURN_SECRET": self.turn_secret,
        }

    def token(self, consultation: str, participant: str, role: str, **kwargs: object) -> str:
        """A room token for an *active* session of this room (seeded in PostgreSQL).

        Joining requires an active session naming the participant; tests about
        media and signaling get one here.  The sessions API has its own tests.
        """
        call_type = str(kwargs.get("call_type", "consultation"))
        self.seed_active_session(consultation, participant, role, call_type)
        return self.tokens.mint(
            participant_id=participant,
            role=role,
            room_id=consultation,
            **kwargs,  # type: ignore[arg-type]
        )

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """`telemed ARGS` with this stack's configuration (``env`` overrides it)."""
        return subprocess.run(
            [sys.executable, "-m", "controlplane.cli", *args],
            env={**os.environ, **self.control_plane_env(**env)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def psql(self, sql: str) -> str:
        result = subprocess.run(
            ["psql", self.database_admin_url, "-v", "ON_ERROR_STOP=1", "-tAqc", sql],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def seed_active_session(self, room: str, participant: str, role: str, call_type: str) -> None:
        for value in (room, participant, role, call_type):
            assert re.fullmatch(r"[A-Za-z0-9_.:-]+", value), value  # ids only, never SQL
        session_type = call_type if call_type in SESSION_TYPES else "consultation"
        self.psql(
            "INSERT INTO clinicians (id, crm, uf, specialties) VALUES ('seed-dr', '1', 'SP', '{}') "
            "ON CONFLICT DO NOTHING; "
            "INSERT INTO sessions (id, room_id, patient_id, physician_id, session_type, specialty, "
            "scheduled_for, estimated_duration_minutes, clinic_id, status, created_by, started_at, "
            "last_activity_at, licence_verified, consent_obtained) VALUES (gen_random_uuid(), "
            f"'{room}', 'seed-pt', 'seed-dr', '{session_type}', 'seed', now(), 30, 'clinic-1', "
            "'active', 'test-seed', now(), now(), true, true) ON CONFLICT (room_id) DO NOTHING; "
            "INSERT INTO session_participants (session_id, participant_id, role) "
            f"SELECT id, '{participant}', '{role}' FROM sessions WHERE room_id = '{room}' "
            "ON CONFLICT DO NOTHING;"
        )


# The test SFU's media ports and the test TURN server's relay ports.
MEDIA_RANGES = ((45000, 45999), (51000, 51999))


@pytest.fixture(scope="session")
def reserved_media_ports() -> Iterator[None]:
    """No outgoing connection of the run gets a local port the fault tests' firewalls
    drop (see ephemeral_ports_kept_out_of)."""
    with ephemeral_ports_kept_out_of(*MEDIA_RANGES):
        yield


@pytest.fixture(scope="session")
def stack(reserved_media_ports: None) -> Iterator[Stack]:
    restrict_ice_host_addresses(["127.0.0.1"])
    data_dir = Path(tempfile.mkdtemp(prefix="telemed-test-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its folder
    sfu_secret = secrets.token_urlsafe(24)
    jwt_secret = secrets.token_urlsafe(48)
    turn_secret = secrets.token_urlsafe(24)
    # Never inside the media port ranges that fault tests drop with nftables.
    media_ranges = MEDIA_RANGES
    turn_port = ls.free_port(avoid=media_ranges)
    started: list[ls.ManagedProcess] = []
    data_keys = FieldCipher.generate_spec()
    try:
        started.append(
            start_coturn(
                data_dir / "turn",
                secret=turn_secret,
                port=turn_port,
                relay_min_port=51000,
                relay_max_port=51999,
            )
        )
        redis = ls.start_redis(data_dir / "redis")
        started.append(redis)
        postgres = ls.start_postgres(data_dir / "postgres")
        started.append(postgres)
        sfu = ls.start_sfu_node(
            data_dir,
            redis_url=redis.url,
            secret=sfu_secret,
            node_id="sfu-test-1",
            rtc_min_port=45000,
            rtc_max_port=45999,
        )
        started.append(sfu)
        env = _control_plane_env(
            redis.url,
            sfu_secret,
            jwt_secret,
            postgres.url,
            postgres.admin_url,
            data_keys,
            TELEMED_TURN_HOSTS="127.0.0.1",
            TELEMED_TURN_PORT=str(turn_port),
            TELEMED_TURN_SECRET=turn_secret,
        )
        control = ls.start_control_plane(data_dir, env, avoid_ports=media_ranges)
        started.append(control)
        yield Stack(
            data_dir=data_dir,
            redis_url=redis.url,
            sfu_secret=sfu_secret,
            jwt_secret=jwt_secret,
            sfu=sfu,
            control_plane=control,
            tokens=TokenService(jwt_secret, "telemed", "telemed-room", 3600),
            database_url=postgres.url,
            database_admin_url=postgres.admin_url,
            data_keys=data_keys,
            turn_secret=turn_secret,
            turn_port=turn_port,
            processes=started,
        )
    finally:
        for process in reversed(started):
            process.stop()
        _keep_logs(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def _control_plane_env(
    redis_url: str,
    sfu_secret: str,
    jwt_secret: str,
    database_url: str,
    admin_url: str,
    data_keys: str,
    **overrides: str,
) -> dict[str, str]:
    # A short resume window, so tests see participants that dropped out go.  The
    # shared control plane lets patients straight in (the calls of most tests);
    # the waiting-room tests run control planes with the default policy.
    settings = {
        "TELEMED_LOG_FORMAT": "json",
        "SFU_RPC_TIMEOUT": "5",
        "TELEMED_RESUME_WINDOW": "3",
        "TELEMED_WAITING_ROOM_TYPES": "none",
        **overrides,
    }
    return ls.control_plane_env(
        redis_url=redis_url,
        sfu_secret=sfu_secret,
        jwt_secret=jwt_secret,
        database_url=database_url,
        database_admin_url=admin_url,
        data_keys=data_keys,
        **settings,
    )


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


async def start_call(room: str, *members: MediaPeer) -> None:
    """Every member connects, joins ``room`` and sends; then every member receives
    (so each finds the others' producers already there)."""
    for peer in members:
        await peer.connect()
        await peer.join(room)
        await peer.start_sending()
    for peer in members:
        await peer.start_receiving()


def new_room_id(prefix: str = "c") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture
def instance(stack: Stack) -> Iterator[Callable[..., Instance]]:
    """Starts control planes of the test's own (see tests.fault_injection.Instance)."""
    made: list[Instance] = []

    def make(**env: str) -> Instance:
        made.append(Instance(stack, **env))
        return made[-1]

    yield make
    for item in made:
        item.process.stop()
