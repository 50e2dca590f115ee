"""Faults injected for real: a control plane of a test's own that can be killed,
stopped and restarted on the same port, and TCP connections cut with ``ss -K``."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.devstack import services as ls
from telemed_client import MediaPeer

if TYPE_CHECKING:
    from tests.conftest import Stack


class Instance:
    """A control plane of its own (same Redis, PostgreSQL and SFU node), on a port
    that survives a restart, so faults never touch the shared one."""

    def __init__(self, stack: Stack, **env: str) -> None:
        self._stack = stack
        self._env = stack.control_plane_env(**{"TELEMED_RESUME_WINDOW": "30", **env})
        # Outside the media ports that fault tests drop (tests/conftest.py).
        self.port = ls.free_port(avoid=((45000, 45999), (51000, 51999)))
        self.process = self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ls.ManagedProcess:
        self.process = ls.start_control_plane(self._stack.data_dir, self._env, port=self.port)
        return self.process

    def kill(self) -> None:
        self.process.proc.kill()
        self.process.proc.wait(5)

    def cut_client_sockets(self) -> None:
        """Kill every TCP connection made to this instance (the clients' sockets)."""
        cut_connections_to(self.port)


def cut_connections_to(port: int) -> None:
    """Kill the client side of every TCP connection to ``port`` on this host."""
    subprocess.run(["ss", "-K", "dport", "=", f":{port}"], check=True, capture_output=True)


def cut_socket_of(peer: MediaPeer) -> None:
    """Kill one peer's signaling socket (a dropped link: no goodbye on either side)."""
    local_port = peer.sio.eio.ws.get_extra_info("sockname")[1]
    subprocess.run(["ss", "-K", "sport", "=", f":{local_port}"], check=True, capture_output=True)


@contextlib.contextmanager
def udp_dropped_on_loopback(ports: str, table: str = "telemed_test_udp_drop") -> Iterator[None]:
    """Drop every UDP datagram arriving on loopback for ``ports`` (e.g. "45000-45999",
    the test SFU's media ports) while the block runs: a network gap."""
    rules = (
        f"table inet {table} {{\n chain input {{\n type filter hook input priority 0;\n"
        f" iif lo udp dport {ports} drop\n }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False, capture_output=True)


def children_named(pid: int, name: str) -> set[int]:
    """The pids of ``pid``'s child processes called ``name`` (e.g. a recorder's ffmpeg)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    found.add(int(child))
            except FileNotFoundError:
                continue  # it exited meanwhile
    return found
