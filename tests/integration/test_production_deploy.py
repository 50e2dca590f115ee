"""The production configurations in deploy/ run as shipped, with only the
machine-specific values (addresses, ports, paths, secrets) replaced:

- coturn (deploy/coturn/turnserver.conf) relays to public peers but refuses
  loopback and private ones, which the local/test configuration allows;
- nginx (deploy/nginx/telemed.conf) serves TLS 1.3 only, proxies the REST API
  and upgrades Socket.IO to WebSocket;
- the environment template (deploy/telemed.env.example) names every variable the
  control plane needs: with generated values it starts, as shipped it refuses
  its placeholders with a clear message."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol, create_turn_endpoint

from controlplane.clinical.field_crypto import FieldCipher
from controlplane.devstack import services as ls
from controlplane.devstack.coturn import run_coturn
from controlplane.devstack.local_ca import server_certificate
from controlplane.devstack.processes import ManagedProcess, free_port, spawn, wait_ready
from controlplane.media.ice_servers import IceServers, TurnConfig
from tests.conftest import Stack

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _set(text: str, key: str, value: str | None) -> str:
    """Replace the line ``key=...`` (or drop it when value is None)."""
    line = "" if value is None else f"{key}={value}"
    replaced, count = re.subn(rf"(?m)^{re.escape(key)}=.*$", line, text)
    assert count == 1, f"{key} is not set once in the shipped configuration"
    return replaced


@pytest.fixture(scope="module")
def production_turn(stack: Stack) -> Iterator[tuple[ManagedProcess, int]]:
    folder = stack.data_dir / "prod-turn"
    folder.mkdir(exist_ok=True)
    port = free_port()
    text = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    text = _set(text, "listening-port", str(port))
    for key in ("tls-listening-port", "cert", "pkey"):
        text = _set(text, key, None)
    text = _set(text, "static-auth-secret", stack.turn_secret)
    text = _set(text, "min-port", "54000")
    text = _set(text, "max-port", "54099")
    text = _set(text, "log-file", "stdout")
    text += (
        "no-tls\nlistening-ip=127.0.0.1\nrelay-ip=127.0.0.1\n"
        f"pidfile={folder / 'turn.pid'}\nuserdb={folder / 'turndb'}\n"
    )
    process = run_coturn(folder / "turnserver.conf", text, "127.0.0.1", port)
    yield process, port
    process.stop()


async def _permission(port: int, secret: str, peer: tuple[str, int]) -> int:
    """0 when coturn lets an allocation reach ``peer``, else its TURN error code."""
    username, password = IceServers(TurnConfig(("127.0.0.1",), secret, port)).credentials("t")
    relay, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
    )
    try:
        inner: TurnClientUdpProtocol = relay._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        await inner.channel_bind(0x4000, peer)
        return 0
    except stun.TransactionFailed as exc:
        code: int = exc.response.attributes["ERROR-CODE"][0]
        return code
    finally:
        relay.close()


async def test_production_coturn_refuses_loopback_and_private_peers(
    stack: Stack, production_turn: tuple[ManagedProcess, int]
) -> None:
    _process, port = production_turn
    for peer in (("127.0.0.1", 45000), ("10.1.2.3", 45000), ("192.168.1.10", 45000)):
        assert await _permission(port, stack.turn_secret, peer) == 403, peer
    assert await _permission(port, stack.turn_secret, ("8.8.8.8", 45000)) == 0
    # The local/test configuration lets the relay reach the SFU on loopback.
    assert await _permission(stack.turn_port, stack.turn_secret, ("127.0.0.1", 45000)) == 0


@pytest.fixture(scope="module")
def proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("nginx")
    assert binary, "nginx is not installed (make setup installs nginx-light)"
    folder = tmp_path_factory.mktemp("nginx")
    folder.chmod(0o755)
    tls = server_certificate(folder / "tls", ["127.0.0.1"])
    https, http = free_port(), free_port()
    site = (DEPLOY / "nginx" / "telemed.conf").read_text()
    site = re.sub(r"(?m)^\s*listen \[::\].*\n", "", site)
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{https} ssl")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    site = re.sub(r"server 127\.0\.0\.1:\d+;", f"server {stack.url[7:]};", site)
    site = re.sub(r"ssl_certificate .*;", f"ssl_certificate {tls.cert};", site)
    site = re.sub(r"ssl_certificate_key .*;", f"ssl_certificate_key {tls.key};", site)
    site = site.replace("/var/log/nginx/", f"{folder}/")
    (folder / "telemed.conf").write_text(site)
    (folder / "nginx.conf").write_text(
        f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events {}\n"
        f"http {{\n  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
        f"  access_log off;\n  include {folder}/telemed.conf;\n}}\n"
    )
    check = subprocess.run([binary, "-t", "-c", str(folder / "nginx.conf")], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    process = spawn("nginx", [binary, "-c", str(folder / "nginx.conf")], folder / "nginx.log")

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", https), timeout=0.5):
            return True

    wait_ready(process, ready, 10)
    yield f"https://127.0.0.1:{https}", tls.ca_cert
    process.stop()


async def test_the_reverse_proxy_serves_tls13_and_upgrades_socketio(
    proxy: tuple[str, Path],
) -> None:
    url, ca = proxy
    trusted = ssl.create_default_context(cafile=str(ca))
    host, port = url[8:].split(":")
    _reader, writer = await asyncio.open_connection(host, int(port), ssl=trusted)
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    writer.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/health/live", ssl=trusted) as response:
            assert response.status == 200
        async with http.ws_connect(
            f"{url.replace('https', 'wss')}/socket.io/?EIO=4&transport=websocket", ssl=trusted
        ) as socket:
            opening = await socket.receive_str(timeout=5)
            assert opening.startswith("0{") and '"sid"' in opening  # Engine.IO open packet
    old = ssl.create_default_context(cafile=str(ca))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            await http.get(f"{url}/health/live", ssl=old)


def _template() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "telemed.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _machine_values(stack: Stack, template: dict[str, str]) -> dict[str, str]:
    """Where the template names this machine's services, this stack's."""
    assert {"TELEMED_JWT_SECRET", "SFU_SECRET", "DATABASE_URL", "TELEMED_DATA_KEYS"} <= set(
        template
    )
    return {
        **template,
        "TELEMED_PORT": str(free_port()),
        "REDIS_URL": stack.redis_url,
        "DATABASE_URL": stack.database_url,
        "DATABASE_ADMIN_URL": stack.database_admin_url,
        "TELEMED_TURN_HOSTS": "127.0.0.1",
        "TELEMED_TURN_PORT": str(stack.turn_port),
        "TELEMED_TURN_TLS_PORT": "0",
        "TELEMED_LOG_FORMAT": "json",
    }


async def test_the_env_template_with_generated_secrets_starts_the_control_plane(
    stack: Stack,
) -> None:
    env = _machine_values(stack, _template())
    env.update(
        TELEMED_JWT_SECRET=secrets.token_urlsafe(48),
        TELEMED_DATA_KEYS=FieldCipher.generate_spec(),
        # Shared with the running SFU node and coturn, which generated theirs.
        SFU_SECRET=stack.sfu_secret,
        TELEMED_TURN_SECRET=stack.turn_secret,
    )
    process = await asyncio.to_thread(
        ls.start_control_plane, stack.data_dir, env, int(env["TELEMED_PORT"])
    )
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{process.url}/health") as response:
            body = await response.json()
        assert (response.status, body["redis"], body["database"]) == (200, "ok", "ok"), body
    finally:
        await asyncio.to_thread(process.stop)


def test_the_env_template_as_shipped_is_refused_clearly(stack: Stack) -> None:
    env = {**_machine_values(stack, _template()), "DATABASE_URL": stack.database_url}
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "serve"],
        env={"PATH": os.environ["PATH"], **env},
        cwd=DEPLOY.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "TELEMED_JWT_SECRET is a placeholder from a template" in result.stderr
    assert "openssl rand" in result.stderr and "Traceback" not in result.stderr
