"""Start the system's processes locally: Redis, PostgreSQL, the SFU node and the
control plane.  Used by ``telemed dev`` (``make run``) and by the test fixtures.

Everything runs on loopback, with data under a folder the caller chooses.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SFU_DIR = PROJECT_ROOT / "sfu_worker"


class ServiceError(RuntimeError):
    """A local service failed to start."""


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    # PostgreSQL only: the owner role's URL (migrations); ``url`` is the app role's.
    admin_url: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started us dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    log_file.close()
    return ManagedProcess(name=name, proc=proc, log_path=log_path, env=env or {})


def _wait(process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise ServiceError(f"{process.name} exited during start-up:\n{process.log_tail()}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.1)
    process.stop()
    raise ServiceError(f"{process.name} not ready after {timeout:.0f}s:\n{process.log_tail()}")


def _tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- Redis ---------------------------------------------------------------------


def start_redis(data_dir: Path, port: int | None = None) -> ManagedProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (run `make setup`)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = _spawn(
        "redis",
        [
            binary,
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
    process.url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    _wait(process, ready, 15)
    return process


# ---- PostgreSQL ------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"PostgreSQL's {name} is not installed (run `make setup`)")
    return found


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run it as the `postgres` system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _secret_file(path: Path) -> str:
    """A random secret generated once into a 0600 file and read back afterwards."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def start_postgres(data_dir: Path, port: int | None = None) -> ManagedProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    socket_dir = data_dir / "socket"
    password_file = data_dir / "password"
    password = _secret_file(password_file)
    socket_dir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        postgres_user = pwd.getpwnam("postgres")
        for path in (data_dir, socket_dir):
            os.chown(path, postgres_user.pw_uid, postgres_user.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        pwfile = data_dir / "initpw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        try:
            subprocess.run(
                _as_postgres_user(
                    [
                        _pg_bin("initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        "telemed",
                        "--pwfile",
                        str(pwfile),
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
    process = _spawn(
        "postgres",
        _as_postgres_user(
            [
                _pg_bin("postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-k",
                str(socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
            ]
        ),
        data_dir / "postgres.log",
    )
    _wait(process, lambda: _tcp_open(port), 30)
    env = {**os.environ, "PGPASSWORD": password}
    exists = subprocess.run(
        [
            _pg_bin("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "telemed",
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1 FROM pg_database WHERE datname = 'telemed'",
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    if exists.stdout.strip() != b"1":
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "telemed", "telemed"],
            check=True,
            capture_output=True,
            env=env,
        )
    app_password_file = data_dir / "app-password"
    app_password = _secret_file(app_password_file)
    # The application role: no superuser, no ownership; migrations grant it what it needs.
    subprocess.run(
        [
            _pg_bin("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "telemed",
            "-d",
            "telemed",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemed_app') THEN "
            f"CREATE ROLE telemed_app LOGIN PASSWORD '{app_password}'; END IF; END $$; "
            "GRANT CONNECT ON DATABASE telemed TO telemed_app;",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    process.admin_url = f"postgresql://telemed:{password}@127.0.0.1:{port}/telemed"
    process.url = f"postgresql://telemed_app:{app_password}@127.0.0.1:{port}/telemed"
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
) -> ManagedProcess:
    port = port or free_port()
    env = {
        "MEDIASOUP_WORKER_BIN": str(worker_binary()),
        "SFU_SECRET": secret,
        "SFU_LISTEN_PORT": str(port),
        "SFU_NODE_ID": node_id or f"sfu-local-{port}",
        "SFU_RTC_MIN_PORT": str(rtc_min_port),
        "SFU_RTC_MAX_PORT": str(rtc_max_port),
        "REDIS_URL": redis_url,
        **({"SFU_NUM_WORKERS": str(num_workers)} if num_workers else {}),
        **(extra_env or {}),
    }
    process = _spawn(
        "sfu-node",
        ["node", str(SFU_DIR / "src" / "server.js")],
        data_dir / f"sfu-{port}.log",
        env=env,
        cwd=SFU_DIR,
    )
    process.url = f"ws://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return bool(response.status == 200)

    _wait(process, ready, 30)
    return process


# ---- control plane ------------------------------------------------------------------


def start_control_plane(
    data_dir: Path, env: dict[str, str], port: int | None = None, host: str = "127.0.0.1"
) -> ManagedProcess:
    port = port or free_port()
    full_env = {**env, "TELEMED_PORT": str(port), "TELEMED_HOST": host}
    process = _spawn(
        "control-plane",
        [sys.executable, "-m", "controlplane.cli", "serve"],
        data_dir / f"controlplane-{port}.log",
        env=full_env,
        cwd=PROJECT_ROOT,
    )
    process.url = f"http://{host}:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{process.url}/health/live", timeout=1) as response:
            return bool(response.status == 200)

    _wait(process, ready, 30)
    return process
