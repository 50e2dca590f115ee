"""`telemed links` (the README's way to try a call) creates a real, active,
audited session whose two links join and exchange media."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_links_open_an_active_session_for_both_participants(stack: Stack, peers) -> None:
    env = {
        **os.environ,
        **stack.control_plane_env(TELEMED_PUBLIC_URL=stack.url),
        "TELEMED_DATA_DIR": str(stack.data_dir / "no-dev"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controlplane.cli",
        "links",
        "--json",
        "--session-type",
        "emergency",
        "--physician-id",
        "dr-cli",
        "--patient-id",
        "pt-cli",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    links = json.loads(stdout)
    room = links["roomId"]
    assert links["physician"].startswith(f"{stack.url}/consult/{room}#token=")
    status = stack.psql(
        f"SELECT status || ',' || session_type FROM sessions WHERE room_id = '{room}'"
    )
    assert status == "active,emergency"

    doctor = MediaPeer(stack.url, links["physician"].split("#token=")[1])
    patient = MediaPeer(stack.url, links["patient"].split("#token=")[1])
    peers.extend([doctor, patient])
    for peer in (doctor, patient):
        await peer.connect()
        info = await peer.join(room)
        assert info["mediaProfile"]["callType"] == "emergency"
        await peer.start_sending()
    for peer in (doctor, patient):
        await peer.start_receiving()
    await doctor.wait_for_frames("pt-cli", "video", count=5)
    await patient.wait_for_frames("dr-cli", "audio", count=5)
