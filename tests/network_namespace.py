"""A network namespace joined to the host by a veth pair, on 198.51.100.0/24 (a
documentation range): the host side is HOST_IP, the namespace side NS_IP.
Everything is removed on exit, with the namespace's own nftables rules."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
