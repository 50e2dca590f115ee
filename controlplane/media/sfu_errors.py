"""SFU client errors as the error codes clients see."""

from __future__ import annotations

from controlplane.placement.sfu_client import SfuError, SfuRequestError, SfuTimeout, SfuUnavailable
from schemas.errors import ApiError, ErrorCode


def sfu_api_error(exc: SfuError, action: str) -> ApiError:
    if isinstance(exc, SfuUnavailable | SfuTimeout):
        return ApiError(ErrorCode.SFU_UNAVAILABLE, f"the media server is unavailable ({action})")
    if isinstance(exc, SfuRequestError) and exc.error_type == "NOT_FOUND":
        return ApiError(ErrorCode.NOT_FOUND, f"media object not found ({action})")
    if isinstance(exc, SfuRequestError) and exc.error_type == "UNSUPPORTED":
        return ApiError(ErrorCode.UNSUPPORTED_MEDIA, "the receiver cannot decode this media")
    return ApiError(ErrorCode.WEBRTC_CONNECTION_FAILED, f"the media server refused {action}")
