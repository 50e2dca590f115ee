"""A network namespace with a veth pair (198.51.100.0/24, a documentation range),
an SFU node and a control plane listening on the host side of the veth, and a
Python peer running inside the namespace.  Impairments go on the veth: tc tbf
(bandwidth), nftables (loss), and the peer's own delaying send wrapper (delay:
this kernel has no netem)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.devstack import services as ls
from tests.conftest import Stack

HOST_IP = "198.51.100.1"
NS_IP = "198.51.100.2"
ROOT = Path(__file__).resolve().parents[2]


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(list(args), check=check, capture_output=True)


@dataclass
class Netns:
    name: str
    host_if: str
    stack: Stack
    control: ls.ManagedProcess
    redis_url: str


@pytest.fixture(scope="module")
def netns(stack: Stack) -> Iterator[Netns]:
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"tm-{tag}", f"tmh{tag}", f"tmn{tag}"
    started: list[ls.ManagedProcess] = []
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", name)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{NS_IP}/24", "dev", ns_if)
        sh("ip", "netns", "exec", name, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        redis = ls.start_redis(stack.data_dir / f"redis-{tag}")
        started.append(redis)
        sfu = ls.start_sfu_node(
            stack.data_dir,
            redis_url=redis.url,
            secret=stack.sfu_secret,
            node_id=f"sfu-{tag}",
            rtc_min_port=48000,
            rtc_max_port=48999,
            num_workers=1,
            extra_env={"SFU_RTC_LISTEN_IP": HOST_IP},
        )
        started.append(sfu)
        control = ls.start_control_plane(
            stack.data_dir, stack.control_plane_env(REDIS_URL=redis.url), host=HOST_IP
        )
        started.append(control)
        yield Netns(name, host_if, stack, control, redis.url)
    finally:
        for process in reversed(started):
            process.stop()
        sh("ip", "link", "delete", host_if, check=False)
        sh("ip", "netns", "delete", name, check=False)


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
