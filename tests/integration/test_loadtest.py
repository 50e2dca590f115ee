"""`telemed loadtest` against the test deployment, as an operator runs it: with
the control plane's environment, from the command line, reading its JSON."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def loadtest(stack: Stack, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "loadtest", "--json",
         "--url", url or stack.url, *args],
        env={**os.environ, **stack.control_plane_env()},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip


def loadtest_sessions(stack: Stack) -> dict[str, int]:
    rows = stack.psql(
        "SELECT status, count(*) FROM sessions WHERE created_by = 'telemed-loadtest' "
        "GROUP BY status"
    )
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines() if line}


async def test_a_media_load_test_receives_every_track_and_ends_its_sessions(
    stack: Stack,
) -> None:
    """Two consultations of three (physician, patient admitted from the waiting
    room by the physician, a nurse): every participant decodes the two others'
    audio and video, no error, little loss, and the sessions are ended after."""
    before = loadtest_sessions(stack).get("ended", 0)
    result = await asyncio.to_thread(
        loadtest, stack, "--rooms", "2", "--participants", "3", "--seconds", "4"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["errors"] == {}
    assert report["joinMs"]["n"] == 6
    assert report["tracks"] == {"expected": 24, "receiving": 24}
    assert report["firstVideoFrameMs"]["n"] == 12  # each of 6 sees 2 cameras
    assert 0 < report["firstVideoFrameMs"]["p50"] < 10_000
    assert report["framesDecoded"] > 12 * 4 * 10  # video at about 30 fps, audio at 50
    assert report["packets"]["received"] > 0 and report["loss"] < 0.02
    assert report["rttMs"]["n"] > 0
    assert (report["mediaFailures"], report["rejoins"]) == (0, 0)
    assert report["cheapEventMs"]["n"] >= 6 * 3
    assert loadtest_sessions(stack).get("ended", 0) == before + 2
    assert loadtest_sessions(stack).get("active", 0) == 0


async def test_a_signaling_load_test_counts_joins_and_events(stack: Stack) -> None:
    result = await asyncio.to_thread(
        loadtest, stack, "--rooms", "20", "--participants", "2", "--seconds", "3",
        "--signaling-only", "--wave", "10",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["errors"] == {} and report["mode"] == "signaling"
    assert report["joinMs"]["n"] == 40
    assert report["cheapEventMs"]["n"] >= 40 * 2
    assert report["tracks"]["expected"] == 0


async def test_an_unreachable_deployment_is_counted_as_errors(stack: Stack) -> None:
    """Nothing listens at the URL: every join is an error, exit code 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await asyncio.to_thread(
        loadtest, stack, "--rooms", "2", "--seconds", "1", "--signaling-only",
        url=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert sum(report["errors"].values()) == 4
    assert all(code.startswith("join:") for code in report["errors"])
    assert report["joinMs"]["n"] == 0


def test_bad_use_is_refused_with_a_message(stack: Stack) -> None:
    result = loadtest(stack, "--participants", "13")
    assert result.returncode == 2
    assert "participants must be 1 to 12" in result.stderr
    assert result.stdout == ""
