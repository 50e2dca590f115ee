"""REST handlers: recordings (start, stop, read, list, download, delete)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

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


async def recording_media(request: web.Request) -> web.StreamResponse:
    """The decrypted Matroska file (``?watermark=1``: a copy naming who downloaded
    it and when), with HTTP range requests (206 / 416).  A whole one-segment file
    is streamed as it is decrypted; ranges, joined segments and watermarked copies
    are built in memory first."""
    claims = await caller(request)
    watermark = request.query.get("watermark") in ("1", "true")
    recording_id = request.match_info["recording_id"]
    wanted = request.headers.get("Range")
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/x-matroska"}
    recordings = services(request).recordings
    if not wanted and not watermark:
        return await _stream(request, await recordings.media_chunks(claims, recording_id), headers)
    media = await recordings.media(claims, recording_id, watermark=watermark)
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


async def _stream(
    request: web.Request, chunks: AsyncIterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except OSError:
        # Headers are sent: a failure can only cut the transfer short, which the
        # client sees as an incomplete body (logged by the decryption).
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
