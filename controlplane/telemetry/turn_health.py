"""Health of the TURN servers: every ``interval`` seconds each configured server
gets a real TURN allocation, over UDP and over TCP (and TLS when ``turns:`` is
offered), made with a freshly issued one-minute credential.  So "ok" means what
a client needs: the server answers, accepts this control plane's credentials
and hands out a relay address.  The allocation is released at once."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aioice import stun
from aioice.turn import create_turn_endpoint

from controlplane.media.ice_servers import IceServers

log = structlog.get_logger(__name__)

CHECK_TTL = 60  # seconds the health check's own credential is valid


@dataclass
class TurnCheck:
    host: str
    port: int
    transport: str  # udp | tcp | tls
    status: str = "unknown"  # ok | auth_failed | unreachable | error | unknown
    rtt_ms: float | None = None
    checked_at: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "transport": self.transport,
            "status": self.status,
            "rttMs": self.rtt_ms,
            "checkedAt": self.checked_at,
            "detail": self.detail,
        }


@dataclass
class TurnHealth:
    ice_servers: IceServers
    interval: float = 15.0
    timeout: float = 3.0
    on_result: Callable[[TurnCheck], None] | None = None
    checks: list[TurnCheck] = field(init=False)

    def __post_init__(self) -> None:
        config = self.ice_servers.config
        self.checks = []
        if config is None:
            return
        for host in config.hosts:
            self.checks.append(TurnCheck(host, config.port, "udp"))
            self.checks.append(TurnCheck(host, config.port, "tcp"))
            if config.tls_port:
                self.checks.append(TurnCheck(host, config.tls_port, "tls"))

    def summary(self) -> str:
        """not_configured | unknown (not checked yet) | ok | degraded (some checks
        fail) | auth_failed (the server refuses our credentials) | unreachable."""
        if not self.checks:
            return "not_configured"
        statuses = {check.status for check in self.checks}
        if statuses == {"ok"}:
            return "ok"
        if "ok" in statuses:
            return "degraded"
        if statuses in ({"unknown"}, {"auth_failed"}):
            return statuses.pop()
        return "unreachable"

    async def run(self) -> None:
        while self.checks:
            await self.check_once()
            await asyncio.sleep(self.interval)

    async def check_once(self) -> list[TurnCheck]:
        await asyncio.gather(*(self._check(check) for check in self.checks))
        return self.checks

    async def _check(self, check: TurnCheck) -> None:
        username, password = self.ice_servers.credentials("health-check", ttl=CHECK_TTL)
        started = time.perf_counter()
        status, detail = "ok", ""
        try:
            await asyncio.wait_for(self._allocate(check, username, password), self.timeout)
        except stun.TransactionFailed as exc:
            code = exc.response.attributes.get("ERROR-CODE", (0, ""))[0]
            status = "auth_failed" if code == 401 else "error"
            detail = f"TURN error {code}"
        except (TimeoutError, stun.TransactionTimeout):
            status, detail = "unreachable", f"no answer within {self.timeout:g} s"
        except (OSError, ConnectionError) as exc:
            status, detail = "unreachable", type(exc).__name__
        except Exception as exc:  # a malformed answer: report it, keep checking
            status, detail = "error", type(exc).__name__
        previous = check.status
        check.status, check.detail = status, detail
        check.rtt_ms = round((time.perf_counter() - started) * 1000, 1) if status == "ok" else None
        check.checked_at = time.time()
        if status != previous:
            log_method = log.info if status == "ok" else log.warning
            log_method("turn_health", host=check.host, transport=check.transport, status=status)
        if self.on_result is not None:
            self.on_result(check)

    @staticmethod
    async def _allocate(check: TurnCheck, username: str, password: str) -> None:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            (check.host, check.port),
            username,
            password,
            lifetime=CHECK_TTL,
            ssl=ssl.create_default_context() if check.transport == "tls" else None,
            transport="udp" if check.transport == "udp" else "tcp",
        )
        with contextlib.suppress(Exception):
            transport.close()
