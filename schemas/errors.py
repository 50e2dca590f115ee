"""Error codes shared by signaling acks and REST error bodies.

Every failure reaching a client has the shape
``{"error": {"code": "<CODE>", "message": "<human readable>"}}`` (plus optional
``details`` for validation errors).  Messages never carry stack traces, tokens or
personal data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    NOT_JOINED = "NOT_JOINED"
    ALREADY_JOINED = "ALREADY_JOINED"
    ROOM_FULL = "ROOM_FULL"
    CONFLICT = "CONFLICT"
    SFU_UNAVAILABLE = "SFU_UNAVAILABLE"
    WEBRTC_CONNECTION_FAILED = "WEBRTC_CONNECTION_FAILED"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    PHYSICIAN_NOT_AUTHORIZED = "PHYSICIAN_NOT_AUTHORIZED"
    RECORDING_PERMISSION_DENIED = "RECORDING_PERMISSION_DENIED"
    COMPLIANCE_VIOLATION = "COMPLIANCE_VIOLATION"
    RESUME_EXPIRED = "RESUME_EXPIRED"
    NOT_ADMITTED = "NOT_ADMITTED"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ApiError(Exception):
    """An error with a code that is safe to show to the client."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}
