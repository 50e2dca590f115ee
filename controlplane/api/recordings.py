"""REST handlers: recordings (start, stop, read, list, download, delete)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pyrage
import structlog
from aiohttp import web

from controlplane.api.context import body, caller, services
from schemas import rest as r
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def recording_start(request: web.Request) -> web.Response:
    claims = await caller(request)
    session_id = str((await body(request, r.SessionIdSchema()))["sessionId"])
    return web.json_response(await services(request).recordings.start(claims, session_id))


async def recording_stop(request: web.Request) -> web.Response:
    claims = await caller(request)
    recording_id = str((await body(request, r.RecordingIdSchema()))["recordingId"])
    return web.json_response(await services(request).recordings.stop(claims, recording_id))


async def recording_get(request: web.Request) -> web.Response:
    claims = await caller(request)
    recording_id = request.match_info["recording_id"]
    return web.json_response(await services(request).recordings.get(claims, recording_id))


async def recording_delete(request: web.Request) -> web.Response:
    claims = await caller(request)
    recording_id = request.match_info["recording_id"]
    return web.json_response(await services(request).recordings.delete(claims, recording_id))


async def session_recordings(request: web.Request) -> web.Response:
    claims = await caller(request)
    session_id = request.match_info["session_id"]
    listed = await services(request).recordings.of_session(claims, session_id)
    return web.json_response({"recordings": listed})


async def watermarked(media: bytes, who: str) -> bytes:
    """A copy with a visible line naming who downloaded it and when (video
    re-encoded with ffmpeg's drawtext; audio copied)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %Hh%Mm%Ss UTC")
    text = f"Downloaded by {who.replace(':', '.')} on {when}"
    drawtext = (
        f"drawtext=text='{text}':fontcolor=white:fontsize=14:box=1:boxcolor=black@0.6"
        ":boxborderw=4:x=6:y=6"
    )
    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "matroska",
        "-i",
        "pipe:0",
        "-map",
        "0",
        "-c:a",
        "copy",
        "-vf",
        drawtext,
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "1M",
        "-f",
        "matroska",
        "pipe:1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(media)
    if process.returncode != 0:
        log.error("watermark_failed", error=err.decode(errors="replace")[-300:])
        raise ApiError(ErrorCode.INTERNAL_ERROR, "the watermarked copy could not be made")
    return out


async def recording_media(request: web.Request) -> web.Response:
    """The decrypted Matroska file (``?watermark=1``: a copy naming who downloaded
    it and when), with HTTP range requests (206 / 416)."""
    claims = await caller(request)
    watermark = request.query.get("watermark") in ("1", "true")
    path, identity = await services(request).recordings.media(
        claims, request.match_info["recording_id"], watermark=watermark
    )
    try:
        media = await asyncio.to_thread(lambda: pyrage.decrypt(path.read_bytes(), [identity]))
    except (OSError, pyrage.DecryptError):
        raise ApiError(ErrorCode.CONFLICT, "the recording's file cannot be read") from None
    if watermark:
        media = await watermarked(media, claims.subject)
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/x-matroska"}
    wanted = request.headers.get("Range")
    if not wanted:
        return web.Response(body=media, headers=headers)
    match = _RANGE.match(wanted.strip())
    size = len(media)
    if match is None or match.groups() == ("", ""):
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    first, last = match.groups()
    start = int(first) if first else max(0, size - int(last))
    end = min(size - 1, int(last)) if first and last else size - 1
    if start >= size or start > end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return web.Response(status=206, body=media[start : end + 1], headers=headers)
