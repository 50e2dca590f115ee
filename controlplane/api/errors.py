"""REST errors: every failure is ``{"error": {"code", "message"}}`` with an HTTP
status from its code; never a stack trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from marshmallow import ValidationError

from controlplane.backends import OUTAGE_ERRORS
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

PREFIX = "/api/telemedicine"

HTTP_STATUS = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.PHYSICIAN_NOT_AUTHORIZED: 403,
    ErrorCode.RECORDING_PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.COMPLIANCE_VIOLATION: 409,
    ErrorCode.SFU_UNAVAILABLE: 503,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.RESUME_EXPIRED: 410,
    ErrorCode.RATE_LIMITED: 429,
}


def error_response(
    code: ErrorCode, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    return web.json_response(
        ApiError(code, message, details).to_payload(), status=HTTP_STATUS.get(code, 500)
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("rest_error", path=request.path, code=str(exc.code))
        response = error_response(exc.code, exc.message, exc.details)
        if exc.code == ErrorCode.RATE_LIMITED and exc.details:
            response.headers["Retry-After"] = str(exc.details["retryAfter"])
        return response
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        log.info("rest_invalid_payload", path=request.path, fields=sorted(map(str, messages)))
        return error_response(ErrorCode.VALIDATION_ERROR, "invalid payload", messages)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith(PREFIX):
            code = ErrorCode.NOT_FOUND if exc.status == 404 else ErrorCode.VALIDATION_ERROR
            return web.json_response(
                ApiError(code, exc.reason or "error").to_payload(), status=exc.status
            )
        raise
    except OUTAGE_ERRORS as exc:
        log.warning("rest_backend_unavailable", path=request.path, error=type(exc).__name__)
        return error_response(
            ErrorCode.SERVICE_UNAVAILABLE, "the service is briefly unavailable; retry"
        )
    except Exception:
        log.exception("rest_internal_error", path=request.path)
        return error_response(ErrorCode.INTERNAL_ERROR, "internal error")
