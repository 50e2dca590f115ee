"""Media profiles match the medical call types of the design."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controlplane.devstack.services import node_binary
from controlplane.media.profiles import CALL_TYPES, PROFILES, profile_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_call_type_has_a_profile() -> None:
    assert set(PROFILES) == set(CALL_TYPES)


def test_emergency_is_low_resolution_vp8_with_priority() -> None:
    emergency = profile_for("emergency")
    assert (emergency.width, emergency.height, emergency.frameRate) == (640, 480, 15)
    assert (
        emergency.videoBitrateMin
        <= emergency.videoBitrate
        <= emergency.videoBitrateMax
        == 1_000_000
    )
    assert emergency.preferredVideoCodec == "video/VP8"
    assert emergency.priority == "high"


def test_specialist_gets_full_hd_without_h265() -> None:
    specialist = profile_for("specialist")
    assert (specialist.width, specialist.height, specialist.frameRate) == (1920, 1080, 60)
    assert specialist.preferredVideoCodec != "video/H265"


def test_unknown_call_type_is_an_error() -> None:
    with pytest.raises(ValueError):
        profile_for("karaoke")


def test_sfu_node_has_router_codecs_for_every_call_type() -> None:
    """The SFU node's profile names (profiles.js) and the control plane's agree."""
    script = "console.log(JSON.stringify(require('./src/profiles').PROFILE_NAMES))"
    out = subprocess.run(
        [node_binary(), "-e", script],
        cwd=ROOT / "sfu_worker",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert set(json.loads(out)) == set(CALL_TYPES)


def test_emergency_router_offers_only_vp8_video() -> None:
    script = (
        "const {codecsForProfile}=require('./src/profiles');"
        "console.log(JSON.stringify(codecsForProfile('emergency').map(c=>c.mimeType)))"
    )
    out = subprocess.run(
        [node_binary(), "-e", script],
        cwd=ROOT / "sfu_worker",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == ["audio/opus", "video/VP8"]
