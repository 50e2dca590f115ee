"""Serves the browser client (web/dist, built by `make setup`) and its page route."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from schemas.ids import is_valid_id

# The page loads only its own script and styles and talks only to its origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: mediastream:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
}


def add_routes(app: web.Application, web_dir: Path) -> None:
    async def consultation_page(request: web.Request) -> web.StreamResponse:
        if not is_valid_id(request.match_info["room_id"]):
            raise web.HTTPNotFound(text="unknown consultation link")
        index = web_dir / "index.html"
        if not index.exists():
            return web.json_response(
                {"error": {"code": "NOT_FOUND", "message": "the web client is not built"}},
                status=503,
            )
        return web.FileResponse(index, headers=PAGE_HEADERS)

    app.router.add_get("/consult/{room_id}", consultation_page)
    if web_dir.is_dir():
        app.router.add_static("/static/", web_dir, show_index=False, follow_symlinks=False)
