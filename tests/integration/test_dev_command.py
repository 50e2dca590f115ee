"""`telemed dev --https` (what `make run` runs, with HTTPS on a LAN address): the
whole system comes up from an empty data folder in a private home (mode 700),
serves HTTPS on a non-loopback address (a veth of the test's own) with a
certificate the printed local CA signed, runs its own coturn there, and stops
cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from controlplane.devstack.postgres import RELOCATED_ROOT
from controlplane.devstack.processes import free_port
from tests.network_namespace import HOST_IP, veth_namespace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def _read_until(stream: asyncio.StreamReader, pattern: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            raise AssertionError(f"telemed dev exited:\n{seen}")
        seen += line.decode()
    return seen


async def test_dev_https_serves_the_system_on_a_lan_address_with_its_own_ca(
    tmp_path: Path,
) -> None:
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    data_dir = home / "checkout" / ".data"
    ports = {name: free_port() for name in ("port", "sfu", "redis", "postgres", "turn")}
    with veth_namespace():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controlplane.cli",
            "dev",
            "--https",
            "--host",
            HOST_IP,
            "--data-dir",
            str(data_dir),
            "--port",
            str(ports["port"]),
            "--sfu-port",
            str(ports["sfu"]),
            "--redis-port",
            str(ports["redis"]),
            "--postgres-port",
            str(ports["postgres"]),
            "--turn-port",
            str(ports["turn"]),
            cwd=ROOT,
            env={
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TELEMED_", "REDIS_", "DATABASE_"))
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert process.stdout is not None
            banner = await _read_until(process.stdout, r"SHA-256 [0-9A-F:]{95}", 120)
            url = f"https://{HOST_IP}:{ports['port']}"
            assert f"telemed is running at {url}" in banner, banner
            ca = Path(re.search(r"local CA (\S+)", banner).group(1))  # type: ignore[union-attr]
            trusted = ssl.create_default_context(cafile=str(ca))
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 20
                while True:
                    async with http.get(f"{url}/health", ssl=trusted) as response:
                        body = await response.json()
                    if body.get("turn") == "ok" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
            assert response.status == 200, body
            assert (body["redis"], body["database"], body["sfuNodes"], body["turn"]) == (
                "ok",
                "ok",
                1,
                "ok",
            )
            # The page and its socket: TLS on the LAN address.
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/consult/demo", ssl=trusted) as page:
                    assert page.status == 200
            listening = (
                await asyncio.to_thread(
                    subprocess.run, ["ss", "-ulnpH"], capture_output=True, text=True, check=True
                )
            ).stdout
            assert f"{HOST_IP}:{ports['turn']}" in listening  # coturn on the LAN address
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
            for folder in RELOCATED_ROOT.iterdir() if RELOCATED_ROOT.exists() else []:
                marker = folder / "data-dir"
                if marker.exists() and marker.read_text().strip().startswith(str(data_dir)):
                    shutil.rmtree(folder)
    assert code == 0
