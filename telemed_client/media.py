"""Synthetic media tracks for Python peers (tests, probes, load generators),
and helpers to measure what a receiver decoded."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import time

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_PTIME = 0.02
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME)  # 960
VIDEO_CLOCK = 90000


class ToneAudioTrack(MediaStreamTrack):
    """A 400 Hz sine tone (so a receiver can tell audio from silence)."""

    kind = "audio"

    def __init__(self, frequency: float = 400.0, amplitude: float = 0.3) -> None:
        super().__init__()
        samples = array.array(
            "h",
            (
                int(amplitude * 32767 * math.sin(2 * math.pi * frequency * n / AUDIO_RATE))
                for n in range(AUDIO_SAMPLES)
            ),
        )
        self._pcm = samples.tobytes()
        self._start: float | None = None
        self._timestamp = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += AUDIO_SAMPLES
            wait = self._start + self._timestamp / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.pts = self._timestamp
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class PatternVideoTrack(MediaStreamTrack):
    """A moving gradient (changes every frame, so the encoder sends real data)."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        if width % 16 or height % 16:
            raise ValueError("width and height must be multiples of 16")
        self.width = width
        self.height = height
        self._fps = fps
        self._row = bytes(range(256)) * (width // 256 + 2)
        self._chroma = bytes([128]) * (width * height // 4)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index / self._fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        offset = (self._index * 4) % 256
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        frame.planes[0].update(self._row[offset : offset + self.width] * self.height)
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = int(self._index * VIDEO_CLOCK / self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class SilentTrack(MediaStreamTrack):
    """A track that never yields a frame: producers and consumers exist, no media
    flows (load tests of the signaling and control paths without encoder cost)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> AudioFrame | VideoFrame:
        await asyncio.Event().wait()  # until the track is stopped and the task cancelled
        raise MediaStreamError


def audio_rms(frame: AudioFrame) -> float:
    """Root mean square of a decoded s16 audio frame, 0..1."""
    if frame.format.name != "s16":
        return 0.0
    samples = array.array("h")
    samples.frombytes(bytes(frame.planes[0])[: frame.samples * len(frame.layout.channels) * 2])
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0
