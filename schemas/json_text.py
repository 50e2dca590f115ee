"""JSON from clients may carry text Python can hold but the rest of the system
cannot: lone UTF-16 surrogates such as "\\udb58" (JSON escapes allow them; UTF-8
cannot encode them) and NUL characters (PostgreSQL text and jsonb refuse them).
Such text could not be stored, logged or sent on, so a payload holding any is
refused as invalid."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError

_MAX_DEPTH = 64


def check_encodable(value: Any, depth: int = 0) -> None:
    """Raise ValidationError when a string (key or value) is not valid Unicode
    text, or the payload nests deeper than any schema allows."""
    if depth > _MAX_DEPTH:
        raise ValidationError("payload nests too deeply")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("text must be valid Unicode (no lone surrogates)") from None
        if "\x00" in value:
            raise ValidationError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_encodable(key, depth + 1)
            check_encodable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_encodable(item, depth + 1)
