"""The Socket.IO server: authenticates connections and dispatches events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import socketio
import structlog
from marshmallow import ValidationError

from controlplane.auth import RoomClaims, TokenService
from controlplane.backends import OUTAGE_ERRORS
from controlplane.edge.rate_limits import (
    LOCAL,
    IpNetwork,
    RateLimited,
    RateLimits,
    client_address,
)
from controlplane.media.services import MediaServices
from controlplane.telemetry.metrics import Metrics
from schemas.errors import ApiError, ErrorCode
from schemas.signaling import load
from signaling.handlers import EVENTS, Context
from signaling.wire import WirePacket

log = structlog.get_logger(__name__)

# Largest Socket.IO message accepted (SDP-derived RTP parameters are a few KiB).
MAX_MESSAGE_BYTES = 256 * 1024


def create_sio(redis_url: str | None, origins: tuple[str, ...]) -> socketio.AsyncServer:
    """``origins``: the pages that may open a connection (a browser's Origin
    header must be one of them; clients that send none, like the Python client,
    are not browsers and authenticate with their token alone)."""
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    return socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        serializer=WirePacket,
        cors_allowed_origins=list(origins),
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        # A silent client (network gone, no RST) is noticed within 20 s.
        ping_interval=10,
        ping_timeout=10,
        logger=False,
        engineio_logger=False,
    )


# Events that only read: they need not wait for the connection's earlier events.
READ_ONLY_EVENTS = frozenset({"getRouterRtpCapabilities", "reportStats"})
# Refused while the instance drains (shuts down gracefully).
ENTRY_EVENTS = frozenset({"join", "resume"})

AUDITED_REFUSALS = frozenset({ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.RATE_LIMITED})

STAFF_NAMESPACE = "/staff"
STAFF_ROLES = frozenset({"admin"})


class SignalingServer:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        tokens: TokenService,
        media: MediaServices,
        metrics: Metrics,
        limits: RateLimits,
        trusted_proxies: tuple[IpNetwork, ...] = (),
    ) -> None:
        self.metrics = metrics
        self._limits = limits
        self._trusted_proxies = trusted_proxies
        self._addresses: dict[str, str] = {}
        self.sio = sio
        self._tokens = tokens
        self._membership = media.membership
        self._resumption = media.resumption
        self._erasure = media.erasure
        self.draining = False
        self._claims: dict[str, RoomClaims] = {}
        # One connection, one order: its state-changing events (and its
        # disconnect) run one after another, so every per-participant limit
        # holds however many requests the client sends at once.
        self._order: dict[str, asyncio.Lock] = {}
        self._ctx = Context(media=media, claims=self._claims_for)
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        for name in EVENTS:
            sio.on(name, self._dispatcher(name))
        # Live alerts for technical staff: admin API tokens only.
        sio.on("connect", self._on_staff_connect, namespace=STAFF_NAMESPACE)

    def _address(self, environ: dict[str, Any]) -> str:
        request = environ.get("aiohttp.request")
        peer = getattr(request, "remote", None)
        return client_address(peer, environ.get("HTTP_X_FORWARDED_FOR"), self._trusted_proxies)

    async def _admit(self, address: str) -> None:
        """Connection attempts per address, and no token checked for an address
        past its failed-authentication limit."""
        await self._limits.hit("connect_address", address)
        await self._limits.check("auth_failure_address", address)

    async def _failed_auth(self, address: str, exc: ApiError) -> None:
        if exc.code in (ErrorCode.UNAUTHORIZED, ErrorCode.SESSION_EXPIRED):
            with contextlib.suppress(RateLimited):
                await self._limits.hit("auth_failure_address", address)

    async def _on_staff_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        address = self._address(environ)
        try:
            await self._admit(address)
            try:
                claims = await self._tokens.verify_api_async(token)
            except ApiError as exc:
                await self._failed_auth(address, exc)
                raise
            if claims.role not in STAFF_ROLES:
                raise ApiError(ErrorCode.FORBIDDEN, "the staff channel is for technical staff")
        except ApiError as exc:
            log.warning("staff_connect_refused", code=str(exc.code))
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, exc.to_payload()["error"]
            ) from None
        # Staff hear the alerts of their own clinic only.
        await self.sio.enter_room(sid, f"clinic:{claims.clinic}", namespace=STAFF_NAMESPACE)

    async def push_staff(self, event: str, data: dict[str, Any]) -> None:
        """To the staff of the alert's clinic; to all staff only when the clinic is
        unknown (its session could not be read), so that no alert goes unheard."""
        clinic = data.get("clinicId")
        room = f"clinic:{clinic}" if clinic else None
        await self.sio.emit(event, data, namespace=STAFF_NAMESPACE, to=room)

    def _claims_for(self, sid: str) -> RoomClaims:
        claims = self._claims.get(sid)
        if claims is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "not authenticated")
        return claims

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        address = self._address(environ)
        try:
            if self.draining:
                raise ApiError(ErrorCode.SERVICE_UNAVAILABLE, "the server is restarting; retry")
            await self._admit(address)
            try:
                claims = self._tokens.verify(token)
            except ApiError as exc:
                await self._failed_auth(address, exc)
                raise
            if claims.display_name and await self._name_erased(claims.participant_id):
                claims = replace(claims, display_name="")
        except ApiError as exc:
            log.warning("connect_refused", code=str(exc.code))
            # Browsers see err.message and err.data = {"code": ..., "message": ...}.
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, exc.to_payload()["error"]
            ) from None
        self._claims[sid] = claims
        self._addresses[sid] = address
        log.info("socket_connected", participant_id=claims.participant_id, role=claims.role)

    async def _name_erased(self, participant_id: str) -> bool:
        """A token minted before its owner's erasure request still names them."""
        try:
            return await self._erasure.name_erased(participant_id)
        except OUTAGE_ERRORS:
            return True  # unknown: show the role rather than a name that may be erased

    def _lock(self, sid: str) -> asyncio.Lock:
        lock = self._order.get(sid)
        if lock is None:
            lock = self._order[sid] = asyncio.Lock()
        return lock

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        log.info("socket_disconnected", reason=str(reason))
        try:
            async with self._lock(sid):
                if reason == self.sio.reason.CLIENT_DISCONNECT:
                    # The client closed its connection on purpose: it left.
                    await self._membership.leave(sid, reason="disconnected")
                else:
                    # A dropped link: the participant may resume within the window.
                    await self._resumption.suspend(sid, "connection_lost")
        except Exception:
            log.exception("leave_on_disconnect_failed")
        finally:
            self._claims.pop(sid, None)
            self._order.pop(sid, None)
            self._addresses.pop(sid, None)

    async def drain(self) -> None:
        """Graceful shutdown: refuse new connections and joins, keep every call's
        media, and tell the clients to reconnect (to another instance, or to this
        one once it is back) and resume."""
        self.draining = True
        sids = await self._resumption.drain()
        for sid in sids:
            await self.sio.emit("serverDraining", {"reconnect": True}, to=sid)
            await self.sio.disconnect(sid)
        log.info("signaling_drained", connections=len(sids))

    def _dispatcher(self, name: str) -> Any:
        schema_class, handler = EVENTS[name]
        schema = schema_class()
        ordered = name not in READ_ONLY_EVENTS

        async def dispatch(sid: str, data: Any = None) -> dict[str, Any]:
            started = time.perf_counter()
            self.metrics.signaling_requests.labels(name).inc()
            try:
                await self._limits.hit("socket_event", sid)
                await self._limits.hit("socket_address", self._addresses.get(sid, LOCAL))
                payload = load(schema, data)
                if not ordered:
                    return await handler(self._ctx, sid, payload)
                if sid not in self._claims:
                    raise ApiError(ErrorCode.UNAUTHORIZED, "not authenticated")
                if self.draining and name in ENTRY_EVENTS:
                    raise ApiError(ErrorCode.SERVICE_UNAVAILABLE, "the server is restarting")
                async with self._lock(sid):
                    return await handler(self._ctx, sid, payload)
            except ValidationError as exc:
                log.info("signaling_invalid_payload", signal=name, fields=sorted(_fields(exc)))
                self._count_error(name, ErrorCode.VALIDATION_ERROR)
                return ApiError(
                    ErrorCode.VALIDATION_ERROR, "invalid payload", details=_messages(exc)
                ).to_payload()
            except ApiError as exc:
                log.info("signaling_error", signal=name, code=str(exc.code))
                self._count_error(name, exc.code)
                if exc.code in AUDITED_REFUSALS:
                    # Acting on another participant's objects or another consultation,
                    # or flooding (repeats within a minute are counted, not written).
                    claims = self._claims.get(sid)
                    if claims is not None:
                        await self._membership.audit_refusal(sid, claims, name, str(exc.code))
                return exc.to_payload()
            except OUTAGE_ERRORS as exc:
                # Redis or PostgreSQL away: calls in progress keep their media.
                log.warning("signaling_backend_unavailable", signal=name, error=type(exc).__name__)
                self._count_error(name, ErrorCode.SERVICE_UNAVAILABLE)
                return ApiError(
                    ErrorCode.SERVICE_UNAVAILABLE, "the service is briefly unavailable; retry"
                ).to_payload()
            except Exception:
                # Never send internals to the client; the log has the trace.
                log.exception("signaling_internal_error", signal=name)
                self._count_error(name, ErrorCode.INTERNAL_ERROR)
                return ApiError(ErrorCode.INTERNAL_ERROR, "internal error").to_payload()
            finally:
                elapsed = time.perf_counter() - started
                if elapsed > 1.0:
                    log.warning("signaling_slow", signal=name, seconds=round(elapsed, 3))

        return dispatch

    def _count_error(self, event: str, code: ErrorCode) -> None:
        self.metrics.signaling_errors.labels(event, str(code)).inc()


def _messages(exc: ValidationError) -> dict[str, Any]:
    messages = exc.messages
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages}


def _fields(exc: ValidationError) -> list[str]:
    messages = exc.messages
    return [str(k) for k in messages] if isinstance(messages, dict) else ["_schema"]
