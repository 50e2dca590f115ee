"""REST handlers: recordings (start, stop, read, list, download, delete)."""

from __future__ import annotations

import re

from aiohttp import web

from controlplane.api.context import body, caller, services
from schemas import rest as r

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


async def recording_media(request: web.Request) -> web.Response:
    """The decrypted Matroska file (``?watermark=1``: a copy naming who downloaded
    it and when), with HTTP range requests (206 / 416)."""
    claims = await caller(request)
    watermark = request.query.get("watermark") in ("1", "true")
    media = await services(request).recordings.media(
        claims, request.match_info["recording_id"], watermark=watermark
    )
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
