"""structlog setup: key=value lines in development, JSON in production.

Never pass personal health information, names or tokens as log fields; log
identifiers (consultation id, participant id, transport id) instead.
"""

from __future__ import annotations

import logging
import sys

import structlog
from aiohttp.http_exceptions import BadHttpMessage

_REDACTED_KEYS = frozenset({"token", "authorization", "password", "secret", "jwt"})


def _redact(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    for key in list(event_dict):
        if key.lower() in _REDACTED_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header, a broken request
    line) with a stack trace, although it answered 400 and nothing failed: keep one
    line with the parser's reason, no trace (and no header contents)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            record.msg = "malformed_http_request: %s"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    # Third-party libraries are chatty at INFO (aioice, aiortc): keep them at WARNING.
    for name in ("aioice", "aiortc", "engineio", "socketio", "aiohttp.access", "pymediasoup"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
