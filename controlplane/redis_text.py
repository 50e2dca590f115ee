"""Redis replies as text.  The clients are created with ``decode_responses=True``,
but redis-py types every reply as ``bytes | str``; these turn them into ``str``
(decoding bytes, should a client without decoding ever be passed in)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def optional_text(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def texts(values: Iterable[bytes | str]) -> list[str]:
    """Sorted, as sets come back in no order."""
    return sorted(text(v) for v in values)


def text_map(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}
