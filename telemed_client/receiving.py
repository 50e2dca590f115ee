"""What a Python peer received: one record per consumer, filled in by decoding
its track (frames decoded, video size, audio level)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from telemed_client.media import audio_rms


@dataclass
class ReceivedTrack:
    consumer_id: str
    producer_id: str
    peer_id: str
    kind: str
    source: str
    created_at: float
    type: str = "simple"  # "simulcast": the SFU picks one of the sender's layers
    frames: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    width: int = 0
    height: int = 0
    max_rms: float = 0.0
    ended: bool = False
    # Longest wait between two decoded frames (set to 0 to measure from now on).
    max_gap: float = 0.0

    @classmethod
    def of_consumer(cls, item: dict[str, Any]) -> ReceivedTrack:
        """A track about to be received, from a consumer of the ``consume`` ack."""
        return cls(
            consumer_id=item["id"],
            producer_id=item["producerId"],
            peer_id=item["peerId"],
            kind=item["kind"],
            source=item["source"],
            created_at=time.monotonic(),
            type=item.get("type", "simple"),
        )


async def read_frames(media: MediaStreamTrack, track: ReceivedTrack) -> None:
    """Decode a received track until it ends, counting frames, size and audio level."""
    while True:
        try:
            frame = await media.recv()
        except (MediaStreamError, asyncio.CancelledError):
            track.ended = True
            return
        now = time.monotonic()
        if track.first_frame_at is None:
            track.first_frame_at = now
        elif track.last_frame_at is not None:
            track.max_gap = max(track.max_gap, now - track.last_frame_at)
        track.last_frame_at = now
        track.frames += 1
        if isinstance(frame, VideoFrame):
            track.width, track.height = frame.width, frame.height
        elif isinstance(frame, AudioFrame) and track.frames % 5 == 0:
            # Sampling is enough to tell a tone from silence.
            track.max_rms = max(track.max_rms, audio_rms(frame))


def tracks_from(
    tracks: Iterable[ReceivedTrack], peer_id: str, kind: str | None
) -> list[ReceivedTrack]:
    return [t for t in tracks if t.peer_id == peer_id and (kind is None or t.kind == kind)]


async def wait_for_frames(
    received: dict[str, ReceivedTrack],
    peer_id: str,
    kind: str,
    count: int,
    timeout: float,
    errors: list[str],
) -> ReceivedTrack:
    """Poll ``received`` (filled in as frames decode) until a track of ``peer_id``
    has ``count`` frames; TimeoutError says what was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for track in tracks_from(received.values(), peer_id, kind):
            if track.frames >= count:
                return track
        await asyncio.sleep(0.05)
    seen = {t.consumer_id: t.frames for t in tracks_from(received.values(), peer_id, kind)}
    raise TimeoutError(
        f"fewer than {count} decoded {kind} frames from {peer_id}: {seen}; errors: {errors}"
    )
