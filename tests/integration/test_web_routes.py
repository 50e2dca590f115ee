"""The control plane serves the consultation page and its bundle."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_consultation_page_is_served_with_strict_headers(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}/consult/c-123") as response:
            assert response.status == 200
            body = await response.text()
            assert '<script type="module" src="/static/app.js"></script>' in body
            assert '<link rel="modulepreload" href="/static/device.js">' in body
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["Cache-Control"] == "no-store"
        # The page's module and mediasoup-client's, which it imports when it needs it;
        # a module script is refused by browsers unless served as JavaScript.
        async with http.get(f"{stack.url}/static/app.js") as response:
            assert response.status == 200
            assert "javascript" in response.headers["Content-Type"]
            assert 'import("./device.js")' in (await response.text())
        async with http.get(f"{stack.url}/static/device.js") as response:
            assert response.status == 200
            assert "javascript" in response.headers["Content-Type"]
            assert "mediasoup" in (await response.text())


@pytest.mark.parametrize(
    "path", ["/consult/bad%20id", "/consult/..%2F..%2Fetc", "/static/../pyproject.toml"]
)
async def test_bad_paths_are_not_found(stack: Stack, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}{path}") as response:
            assert response.status in (403, 404)
            assert "[project]" not in await response.text()
