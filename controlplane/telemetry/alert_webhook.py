"""Outbound adapter: POSTs alert events to a configured webhook (aiohttp client)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)


class AlertWebhook:
    def __init__(self, url: str) -> None:
        self.url = url
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Fire and forget (the task is kept referenced until it is done)."""
        task = asyncio.create_task(self._post(event, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, event: str, payload: dict[str, Any]) -> None:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._http.post(self.url, json={"event": event, **payload}) as response:
                if response.status >= 300:
                    log.warning("alert_webhook_refused", status=response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert_webhook_failed", error=type(exc).__name__)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
