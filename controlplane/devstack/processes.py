"""Child processes of the local stack: started in their own session, logging to a
file, stopped with their supervisor (PR_SET_PDEATHSIG), waited on until ready."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


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


def free_port(host: str = "127.0.0.1", avoid: Sequence[tuple[int, int]] = ()) -> int:
    """A TCP port free on ``host`` now, in none of the ``avoid`` ranges (the media
    ports a test's firewall drops).  Checked on the address the service will
    listen on: a connection from another of this machine's addresses holds its
    local port there, and only there (even after it closed, for a minute).
    Another process may still take the port before the service binds it: see
    ``start_control_plane``, which tries another."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if not any(low <= port <= high for low, high in avoid):
            return port


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started us dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn(
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


def wait_ready(process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
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


def tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """``url`` answers 200 (a child of ours: its HTTPS certificate is not checked here)."""
    insecure = ssl._create_unverified_context() if url.startswith("https:") else None
    with urllib.request.urlopen(url, timeout=1, context=insecure) as response:
        return bool(response.status == 200)
