"""Serves the browser client (web/dist, built by `make setup`) and its page route."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEB_DIR = PROJECT_ROOT / "web" / "dist"
_CONSULTATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

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
        if not _CONSULTATION_ID.match(request.match_info["consultation_id"]):
            raise web.HTTPNotFound(text="unknown consultation link")
        index = web_dir / "index.html"
        if not index.exists():
            return web.json_response(
                {"error": {"code": "NOT_FOUND", "message": "the web client is not built"}},
                status=503,
            )
        return web.FileResponse(index, headers=PAGE_HEADERS)

    app.router.add_get("/consult/{consultation_id}", consultation_page)
    if web_dir.is_dir():
        app.router.add_static("/static/", web_dir, show_index=False, follow_symlinks=False)
