"""A whole local stack of its own (Redis, PostgreSQL, one SFU node, coturn) with
generated secrets, for benchmarks and tools that must not touch `make run`'s;
control planes are started on it with ``start_control_plane``."""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.clinical.field_crypto import FieldCipher
from controlplane.devstack import services as ls
from controlplane.devstack.coturn import start_coturn


@dataclass
class LocalStack:
    data_dir: Path
    jwt_secret: str
    sfu_secret: str
    data_keys: str
    redis: ls.ManagedProcess
    postgres: ls.ManagedProcess
    sfu: ls.ManagedProcess
    turn_secret: str
    turn_port: int
    processes: list[ls.ManagedProcess] = field(default_factory=list)

    def start_control_plane(self, **settings: str) -> ls.ManagedProcess:
        env = ls.control_plane_env(
            redis_url=self.redis.url,
            sfu_secret=self.sfu_secret,
            jwt_secret=self.jwt_secret,
            database_url=self.postgres.url,
            database_admin_url=self.postgres.admin_url,
            data_keys=self.data_keys,
            **{
                "TELEMED_TURN_HOSTS": "127.0.0.1",
                "TELEMED_TURN_PORT": str(self.turn_port),
                "TELEMED_TURN_SECRET": self.turn_secret,
                **settings,
            },
        )
        process = ls.start_control_plane(self.data_dir, env)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_local_stack(
    *,
    rtc_min_port: int,
    rtc_max_port: int,
    turn_relay_ports: tuple[int, int] = (55000, 55999),
    num_workers: int | None = None,
) -> LocalStack:
    """``num_workers``: mediasoup workers of the SFU node (default: one per core)."""
    data_dir = Path(tempfile.mkdtemp(prefix="telemed-bench-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its folder
    sfu_secret = secrets.token_urlsafe(24)
    turn_secret = secrets.token_urlsafe(24)
    turn_port = ls.free_port()
    started: list[ls.ManagedProcess] = []
    try:
        started.append(ls.start_redis(data_dir / "redis"))
        started.append(ls.start_postgres(data_dir / "postgres"))
        started.append(
            ls.start_sfu_node(
                data_dir,
                redis_url=started[0].url,
                secret=sfu_secret,
                rtc_min_port=rtc_min_port,
                rtc_max_port=rtc_max_port,
                num_workers=num_workers,
            )
        )
        started.append(
            start_coturn(
                data_dir / "turn",
                secret=turn_secret,
                port=turn_port,
                relay_min_port=turn_relay_ports[0],
                relay_max_port=turn_relay_ports[1],
            )
        )
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return LocalStack(
        data_dir=data_dir,
        jwt_secret=secrets.token_urlsafe(48),
        sfu_secret=sfu_secret,
        data_keys=FieldCipher.generate_spec(),
        redis=started[0],
        postgres=started[1],
        sfu=started[2],
        turn_secret=turn_secret,
        turn_port=turn_port,
        processes=started,
    )
