"""A network namespace joined to the host by a veth pair, on 198.51.100.0/24 (a
documentation range): the host side is HOST_IP, the namespace side NS_IP.
Everything is removed on exit, with the namespace's own nftables rules.
``start_host_side`` starts the services a namespace's clients talk to."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.devstack import services as ls
from controlplane.devstack.coturn import start_coturn
from controlplane.devstack.processes import ManagedProcess

if TYPE_CHECKING:
    from tests.conftest import Stack

HOST_IP = "198.51.100.1"
NS_IP = "198.51.100.2"


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(list(args), check=check, capture_output=True)


@dataclass(frozen=True)
class Namespace:
    name: str
    host_if: str
    tag: str

    def run(self, *args: str, check: bool = True) -> None:
        sh("ip", "netns", "exec", self.name, *args, check=check)

    def nft(self, ruleset: str) -> None:
        """Load nftables rules inside the namespace (they go with it)."""
        subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
            input=ruleset.encode(),
            check=True,
            capture_output=True,
        )


@contextmanager
def veth_namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(3)
    ns = Namespace(f"tm-{tag}", f"tmh{tag}", tag)
    ns_if = f"tmn{tag}"
    sh("ip", "netns", "add", ns.name)
    try:
        sh("ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns.name)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", ns.host_if)
        sh("ip", "link", "set", ns.host_if, "up")
        ns.run("ip", "addr", "add", f"{NS_IP}/24", "dev", ns_if)
        ns.run("ip", "link", "set", ns_if, "up")
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        sh("ip", "link", "delete", ns.host_if, check=False)
        sh("ip", "netns", "delete", ns.name, check=False)


@dataclass
class HostSide:
    """Services on the host side of the veth (HOST_IP), reachable from the namespace:
    a Redis, coturn, one SFU node and a control plane of their own."""

    control: ManagedProcess
    env: dict[str, str]  # the control plane's environment
    redis_url: str
    processes: list[ManagedProcess]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


@contextmanager
def ephemeral_ports_kept_out_of(*ranges: tuple[int, int]) -> Iterator[bool]:
    """Keep the kernel from giving ``ranges`` to outgoing connections while the
    block runs (``ip_local_reserved_ports``; explicit binds, as mediasoup's and
    coturn's, still work), then put the old value back.  Without it a Redis or
    Socket.IO connection on loopback now and then got a local port in the media
    range (1 in 28 of 32768-60999), and a fault test's firewall for the SFU's media
    ports cut it too: the control plane lost Redis mid-test.  Yields False where
    the setting cannot be written (not root)."""
    try:
        before = RESERVED_PORTS.read_text().strip()
        wanted = ",".join([before, *(f"{low}-{high}" for low, high in ranges)]).strip(",")
        RESERVED_PORTS.write_text(wanted)
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        RESERVED_PORTS.write_text(before or "\n")


def start_host_side(
    stack: Stack,
    ns: Namespace,
    *,
    sfu_ports: tuple[int, int],
    relay_ports: tuple[int, int],
    **settings: str,
) -> HostSide:
    started: list[ManagedProcess] = []
    try:
        redis = ls.start_redis(stack.data_dir / f"redis-{ns.tag}")
        started.append(redis)
        turn_port = ls.free_port(HOST_IP, (sfu_ports, relay_ports))
        started.append(
            start_coturn(
                stack.data_dir / "turn",
                secret=stack.turn_secret,
                listen_ip=HOST_IP,
                port=turn_port,
                relay_min_port=relay_ports[0],
                relay_max_port=relay_ports[1],
            )
        )
        started.append(
            ls.start_sfu_node(
                stack.data_dir,
                redis_url=redis.url,
                secret=stack.sfu_secret,
                node_id=f"sfu-{ns.tag}",
                rtc_min_port=sfu_ports[0],
                rtc_max_port=sfu_ports[1],
                num_workers=1,
                extra_env={"SFU_RTC_LISTEN_IP": HOST_IP},
            )
        )
        env = stack.control_plane_env(
            REDIS_URL=redis.url,
            **{**stack.turn_env(HOST_IP), "TELEMED_TURN_PORT": str(turn_port), **settings},
        )
        control = ls.start_control_plane(
            stack.data_dir, env, host=HOST_IP, avoid_ports=(sfu_ports, relay_ports)
        )
        started.append(control)
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return HostSide(control, env, redis.url, started)
