"""`telemed serve`: the control plane's HTTP, Socket.IO and background tasks in
one process, on the event loop and with the collector settings of
controlplane/runtime.py."""

from __future__ import annotations

import argparse
import errno
import ssl

import structlog

from controlplane.config import Settings

# The address cannot be listened on: taken, not this machine's, or a port kept
# for root.
LISTEN_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def cmd_serve(_args: argparse.Namespace) -> int:
    from aiohttp import web

    from controlplane.app import RUNTIME, create_app
    from controlplane.logs import configure_logging
    from controlplane.runtime import new_event_loop, tune_gc, watch_gc_pauses

    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)

    async def serving_app() -> web.Application:
        app = await create_app(settings)
        pauses = app[RUNTIME].metrics.gc_pause
        watch_gc_pauses(lambda generation, seconds: pauses.labels(str(generation)).observe(seconds))
        if settings.gc_young_threshold:
            tune_gc(settings.gc_young_threshold)
        return app

    tls = server_tls(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
    try:
        web.run_app(
            serving_app(),
            host=settings.host,
            port=settings.port,
            ssl_context=tls,
            print=None,
            access_log=None,
            # After the drain only in-flight REST requests remain (milliseconds).
            shutdown_timeout=1.5,
            loop=new_event_loop(settings.event_loop),
        )
    except OSError as exc:
        if exc.errno not in LISTEN_ERRORS:
            raise
        # Everything started was stopped by then; say why in one line, no traceback.
        structlog.get_logger().error(
            "listen_failed",
            host=settings.host,
            port=settings.port,
            error=errno.errorcode.get(exc.errno or 0, "OSError"),
        )
        return 1
    return 0


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """HTTPS and WSS: TLS 1.2 or newer (1.3 preferred), with this certificate chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
