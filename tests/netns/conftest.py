"""A network namespace with a veth pair (198.51.100.0/24, a documentation range),
an SFU node and a control plane listening on the host side of the veth, and a
Python peer running inside the namespace.  Impairments go on the veth: tc tbf
(bandwidth), nftables (loss), and the peer's own delaying send wrapper (delay:
this kernel has no netem)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.devstack import services as ls
from tests.conftest import Stack
from tests.network_namespace import NS_IP, start_host_side, veth_namespace

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Netns:
    name: str
    host_if: str
    stack: Stack
    control: ls.ManagedProcess
    redis_url: str


@pytest.fixture(scope="module")
def netns(stack: Stack) -> Iterator[Netns]:
    with veth_namespace() as ns:
        host = start_host_side(stack, ns, sfu_ports=(48000, 48999), relay_ports=(52000, 52999))
        try:
            yield Netns(ns.name, ns.host_if, stack, host.control, host.redis_url)
        finally:
            host.stop()


class NsPeer:
    """The peer process inside the namespace."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def read(self, timeout: float = 30.0) -> dict:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            err = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"namespace peer exited: {err.decode()[-2000:]}")
        message = json.loads(line)
        if message.get("event") == "error":
            raise AssertionError(f"namespace peer failed: {message}")
        return message

    async def command(self, text: str) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{text}\n".encode())
        await self.process.stdin.drain()
        return await self.read()


@pytest.fixture
async def ns_peer_factory(netns: Netns) -> AsyncIterator:
    made: list[NsPeer] = []

    async def start(token: str, room: str, from_peer: str) -> NsPeer:
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            netns.name,
            sys.executable,
            "-m",
            "tests.netns.peer_process",
            "--url",
            netns.control.url,
            "--token",
            token,
            "--room",
            room,
            "--address",
            NS_IP,
            "--from-peer",
            from_peer,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        peer = NsPeer(process)
        made.append(peer)
        ready = await peer.read(timeout=40)
        assert ready["event"] == "ready", ready
        return peer

    yield start
    for peer in made:
        if peer.process.returncode is None:
            try:
                await asyncio.wait_for(peer.command("quit"), 5)
            except (TimeoutError, AssertionError, BrokenPipeError, ConnectionResetError):
                pass
            if peer.process.returncode is None:
                peer.process.kill()
            await peer.process.wait()
