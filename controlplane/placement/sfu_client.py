"""Async client for an SFU node's JSON-RPC API over WebSocket.

One client per SFU node.  Requests time out (``SfuTimeout``); a node that cannot
be reached or drops the connection gives ``SfuUnavailable``; an error answered by
the node gives ``SfuRequestError`` with its type (NOT_FOUND, INVALID_PARAMS, ...).
Notifications pushed by the node are handed to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from controlplane.placement.node_trust import NodeTls, leaves_host, rpc_credential

log = structlog.get_logger(__name__)

NotificationHandler = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class SfuError(Exception):
    """Base class of SFU client errors."""


class SfuUnavailable(SfuError):
    """The SFU node cannot be reached or the connection was lost."""


class SfuRefused(SfuUnavailable):
    """Nothing listens on the node's RPC port: its process is gone."""


class SfuUntrusted(SfuUnavailable):
    """The node could not prove who it is (its TLS certificate failed verification,
    or its URL is plaintext to another host): nothing was sent to it."""


class SfuTimeout(SfuError):
    """The SFU node did not answer in time."""


class SfuRequestError(SfuError):
    """The SFU node answered with an error."""

    def __init__(self, method: str, error_type: str, message: str) -> None:
        super().__init__(f"{method}: {error_type}: {message}")
        self.method = method
        self.error_type = error_type
        self.message = message


class SfuClient:
    def __init__(
        self,
        node_id: str,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        on_notification: NotificationHandler | None = None,
        on_disconnect: Callable[[str], Awaitable[None]] | None = None,
        tls: NodeTls | None = None,
    ) -> None:
        self.node_id = node_id
        self.url = url
        self._secret = secret
        self._tls = tls or NodeTls()
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._on_notification = on_notification
        self._on_disconnect = on_disconnect
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        # What the node pushes, handled in order by a task of its own, so that a
        # handler may make requests to the node (the reader must go on reading
        # their answers).  ``None`` stands for "the connection was lost".
        self._inbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._connect_lock = asyncio.Lock()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            if self.url.startswith("ws://") and leaves_host(self.url):
                raise SfuUntrusted(f"SFU node {self.node_id}: plaintext RPC to another host")
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            try:
                # ws_connect has no connect timeout of its own: bound the
                # TCP connect and the handshake together.
                self._ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        self.url,
                        headers={"Authorization": rpc_credential(self._secret, self.node_id)},
                        ssl=self._tls.context() if self.url.startswith("wss://") else True,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                        heartbeat=10.0,
                        max_msg_size=8 * 1024 * 1024,
                    ),
                    self._connect_timeout,
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    raise SfuUnavailable(
                        f"SFU node {self.node_id} refused our credentials"
                    ) from exc
                raise SfuUnavailable(f"SFU node {self.node_id} handshake failed") from exc
            except aiohttp.ClientConnectorCertificateError as exc:
                raise SfuUntrusted(
                    f"SFU node {self.node_id}: its certificate failed verification"
                ) from exc
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, ConnectionRefusedError):
                    raise SfuRefused(
                        f"SFU node {self.node_id} is unreachable: connection refused"
                    ) from exc
                raise SfuUnavailable(f"SFU node {self.node_id} is unreachable") from exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise SfuUnavailable(f"SFU node {self.node_id} is unreachable") from exc
            self._reader = asyncio.create_task(self._read_loop(self._ws))
            if self._dispatcher is None or self._dispatcher.done():
                self._dispatcher = asyncio.create_task(self._dispatch_loop())

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        if not self.connected:
            await self.connect()
        ws = self._ws
        if ws is None or ws.closed:
            raise SfuUnavailable(f"SFU node {self.node_id} connection lost")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send_json(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
            return await asyncio.wait_for(future, timeout or self._timeout)
        except SfuRequestError as exc:
            raise SfuRequestError(method, exc.error_type, exc.message) from None
        except TimeoutError as exc:
            raise SfuTimeout(f"SFU node {self.node_id} did not answer {method} in time") from exc
        except (ConnectionResetError, aiohttp.ClientError) as exc:
            raise SfuUnavailable(f"SFU node {self.node_id} connection lost") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    body = message.json()
                except ValueError:
                    log.warning("sfu_bad_message", node_id=self.node_id)
                    continue
                if "id" in body and body["id"] is not None:
                    self._resolve(body)
                elif body.get("method") == "notify":
                    params = dict(body.get("params") or {})
                    self._inbox.put_nowait((str(params.pop("event", "")), params))
        finally:
            self._fail_pending(SfuUnavailable(f"SFU node {self.node_id} connection lost"))
            if not self._closing:
                log.warning("sfu_connection_lost", node_id=self.node_id)
                self._inbox.put_nowait(None)

    async def _dispatch_loop(self) -> None:
        while True:
            item = await self._inbox.get()
            try:
                if item is None:
                    if self._on_disconnect is not None:
                        await self._on_disconnect(self.node_id)
                    if not self.connected:
                        return  # a new connection starts a new dispatcher
                elif self._on_notification is not None:
                    await self._on_notification(self.node_id, *item)
            except Exception:
                log.exception(
                    "sfu_notification_handler_failed", sfu_event=item[0] if item else "lost"
                )

    def _resolve(self, body: dict[str, Any]) -> None:
        future = self._pending.get(body["id"])
        if future is None or future.done():
            return
        if "error" in body:
            error = body["error"] or {}
            error_type = (error.get("data") or {}).get("type", "INTERNAL")
            future.set_exception(
                SfuRequestError("rpc", str(error_type), str(error.get("message", "")))
            )
        else:
            future.set_result(body.get("result"))

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        if self._session is not None:
            await self._session.close()
