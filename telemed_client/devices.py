"""A Python peer's mediasoup device: the local tracks it sends, and a device
loaded with a router's capabilities."""

from __future__ import annotations

import time
from typing import Any

from aiortc.mediastreams import MediaStreamTrack
from pymediasoup import Device
from pymediasoup.rtp_parameters import RtpCapabilities

from telemed_client.ice_policy import PolicyAiortcHandler
from telemed_client.media import PatternVideoTrack, SilentTrack, ToneAudioTrack


def local_tracks(
    send_audio: bool, send_video: bool, media: str, video_size: tuple[int, int]
) -> list[MediaStreamTrack]:
    """``media`` "synthetic": a tone and a moving pattern; "silent": tracks
    without frames."""
    silent = media == "silent"
    tracks: list[MediaStreamTrack] = []
    if send_audio:
        tracks.append(SilentTrack("audio") if silent else ToneAudioTrack())
    if send_video:
        tracks.append(SilentTrack("video") if silent else PatternVideoTrack(*video_size))
    return tracks


async def loaded_device(
    tracks: list[MediaStreamTrack], capabilities: dict[str, Any]
) -> tuple[Device, float]:
    """A device for these tracks loaded with ``capabilities``, and the seconds
    the load took."""
    device = Device(handlerFactory=PolicyAiortcHandler.createFactory(tracks=tracks))
    started = time.perf_counter()
    await device.load(RtpCapabilities(**capabilities))
    return device, time.perf_counter() - started
