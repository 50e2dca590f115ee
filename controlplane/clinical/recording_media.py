"""A recording's bytes for a download: its segments' ciphertext decrypted and joined
into one file (recording_merge.py), and on request a copy whose video names who
downloaded it and when (ffmpeg drawtext: the video is re-encoded on that path
only, the audio copied)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import pyrage
import structlog
from pyrage import x25519

from controlplane.clinical.recording_merge import Segment, merge
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


def joined(segments: list[dict[str, Any]], identity: x25519.Identity) -> bytes:
    """The recording's segments (their rows) decrypted and joined into one file."""
    parts = [
        Segment(
            pyrage.decrypt(Path(segment["file"]).read_bytes(), [identity]),
            int(segment["startedAt"]),
            [str(stream["producerId"]) for stream in segment["streams"]],
        )
        for segment in segments
    ]
    return merge(parts)


async def decrypted(segments: list[dict[str, Any]], identity: x25519.Identity) -> bytes:
    try:
        return await asyncio.to_thread(joined, segments, identity)
    except (OSError, pyrage.DecryptError, av.FFmpegError) as exc:
        log.error("recording_unreadable", segments=len(segments), error=repr(exc)[:300])
        raise ApiError(ErrorCode.CONFLICT, "the recording's file cannot be read") from None


async def watermarked(media: bytes, who: str) -> bytes:
    when = datetime.now(UTC).strftime("%Y-%m-%d %Hh%Mm%Ss UTC")
    text = f"Downloaded by {who.replace(':', '.')} on {when}"
    drawtext = (
        f"drawtext=text='{text}':fontcolor=white:fontsize=14:box=1:boxcolor=black@0.6"
        ":boxborderw=4:x=6:y=6"
    )
    video = ["-vf", drawtext, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
    process = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "matroska", "-i", "pipe:0"),
        *("-map", "0", "-c:a", "copy", *video, "-b:v", "1M", "-f", "matroska", "pipe:1"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(media)
    if process.returncode != 0:
        log.error("watermark_failed", error=err.decode(errors="replace")[-300:])
        raise ApiError(ErrorCode.INTERNAL_ERROR, "the watermarked copy could not be made")
    return out
