"""A recording's bytes for a download: its segments' ciphertext decrypted and joined
into one file (recording_merge.py), and on request a copy whose video names who
downloaded it and when (ffmpeg drawtext: the video is re-encoded on that path
only, the audio copied)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from concurrent.futures import TimeoutError as FutureTimeout
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
            # Recorded before tracks were named: one track per producer.
            [str(stream.get("track") or stream["producerId"]) for stream in segment["streams"]],
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


class _ToQueue(io.BufferedIOBase):
    """Where pyrage writes plaintext (in a thread): chunks onto an asyncio queue,
    waiting while the reader is behind; stops when the reader has gone."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[bytes | None],
        gone: threading.Event,
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._gone = gone

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        future = asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop)
        while True:
            try:
                future.result(timeout=0.5)
                return len(chunk)
            except FutureTimeout:
                if self._gone.is_set():
                    future.cancel()
                    raise OSError("the download was abandoned") from None


async def streamed(segment: dict[str, Any], identity: x25519.Identity) -> AsyncIterator[bytes]:
    """One segment's plaintext as it is decrypted, a chunk at a time (a bounded
    queue: memory stays small whatever the recording's size)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
    gone = threading.Event()
    failure: list[BaseException] = []

    def decrypt() -> None:
        try:
            with Path(segment["file"]).open("rb") as source:
                pyrage.decrypt_io(source, _ToQueue(loop, queue, gone), [identity])
        except BaseException as exc:  # reported to the reader below
            failure.append(exc)
        if not gone.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    worker = asyncio.ensure_future(asyncio.to_thread(decrypt))
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
        if failure:
            log.error("recording_unreadable", segments=1, error=repr(failure[0])[:300])
            raise OSError("the recording could not be decrypted")
    finally:
        gone.set()
        while not queue.empty():
            queue.get_nowait()
        await worker


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
