"""Medical media profiles per call type.

The SFU node owns the router codecs of each profile (sfu_worker/src/profiles.js,
same names); this module owns what the control plane tells clients and enforces
on transports: capture constraints and bitrate caps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

CALL_TYPES = (
    "consultation",
    "follow_up",
    "emergency",
    "mental_health",
    "group_therapy",
    "second_opinion",
    "specialist",
)


@dataclass(frozen=True)
class MediaProfile:
    callType: str
    width: int
    height: int
    frameRate: int
    videoBitrate: int  # bits per second, target
    videoBitrateMin: int
    videoBitrateMax: int
    audioBitrate: int  # bits per second
    preferredVideoCodec: str
    simulcast: bool = False
    priority: str = "normal"

    @property
    def max_incoming_bitrate(self) -> int:
        """Cap on what one peer may send to the SFU (all its producers)."""
        return self.videoBitrateMax * 2 + self.audioBitrate  # camera + screen + mic

    def simulcast_encodings(self) -> list[dict[str, int]]:
        """The three simulcast layers of a camera, lowest first: a quarter, half
        and full capture size, at an eighth, a third and all of the top bitrate.
        Clients send these; the server picks among them (layers.py)."""
        return [
            {"scaleResolutionDownBy": scale, "maxBitrate": self.videoBitrateMax // share}
            for scale, share in SIMULCAST_LAYERS
        ]

    def uses_simulcast(self, participants: int) -> bool:
        """Cameras go out in layers where the call type asks, or once the room
        holds SIMULCAST_FROM participants (waiting ones included)."""
        return self.simulcast or participants >= SIMULCAST_FROM

    def to_client(self, participants: int = 0) -> dict[str, Any]:
        """The profile as join and resume acks carry it, for a room of ``participants``."""
        return {
            **asdict(self),
            "simulcast": self.uses_simulcast(participants),
            "simulcastEncodings": self.simulcast_encodings(),
        }


# A room this large sends cameras in simulcast layers, whatever its call type.
SIMULCAST_FROM = 3


# (scale down by, share of the top bitrate) per simulcast layer, lowest first.
SIMULCAST_LAYERS = ((4, 8), (2, 3), (1, 1))


_QUALITY_FIRST = MediaProfile(
    callType="consultation",
    width=1280,
    height=720,
    frameRate=30,
    videoBitrate=1_500_000,
    videoBitrateMin=500_000,
    videoBitrateMax=3_000_000,
    audioBitrate=128_000,
    preferredVideoCodec="video/VP8",
)

PROFILES: dict[str, MediaProfile] = {
    "consultation": replace(_QUALITY_FIRST, callType="consultation"),
    "follow_up": replace(_QUALITY_FIRST, callType="follow_up"),
    "mental_health": replace(_QUALITY_FIRST, callType="mental_health"),
    "second_opinion": replace(_QUALITY_FIRST, callType="second_opinion"),
    "emergency": MediaProfile(
        callType="emergency",
        width=640,
        height=480,
        frameRate=15,
        videoBitrate=800_000,
        videoBitrateMin=200_000,
        videoBitrateMax=1_000_000,
        audioBitrate=256_000,
        preferredVideoCodec="video/VP8",
        priority="high",
    ),
    # mediasoup 3.12 offers no H.265: specialists get VP9 (or H.264).
    "specialist": MediaProfile(
        callType="specialist",
        width=1920,
        height=1080,
        frameRate=60,
        videoBitrate=4_000_000,
        videoBitrateMin=1_500_000,
        videoBitrateMax=5_000_000,
        audioBitrate=256_000,
        preferredVideoCodec="video/VP9",
    ),
    "group_therapy": replace(_QUALITY_FIRST, callType="group_therapy", simulcast=True),
}


def profile_for(call_type: str) -> MediaProfile:
    try:
        return PROFILES[call_type]
    except KeyError:
        raise ValueError(f"unknown call type {call_type!r}") from None
