"""Text that cannot be stored (NUL) or encoded (lone surrogates) is refused as
invalid input, wherever it sits in a payload (found by the REST fuzz run: a NUL in
a licence body reached PostgreSQL and answered 500)."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from schemas.json_text import check_encodable
from schemas.signaling import JoinSchema, load


@pytest.mark.parametrize(
    "payload",
    [
        json.loads('{"notes": "dor\\u0000"}'),
        json.loads('{"items": [{"x": "\\ud800"}]}'),
        json.loads('{"\\udfff": 1}'),
    ],
)
def test_unstorable_text_is_refused(payload: object) -> None:
    with pytest.raises(ValidationError):
        check_encodable(payload)


def test_valid_text_including_astral_characters_passes() -> None:
    check_encodable(json.loads('{"name": "Jo\\u00e3o \\ud83d\\ude00", "n": [1, null, true]}'))


def test_too_deep_nesting_is_refused() -> None:
    deep: object = "x"
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValidationError):
        check_encodable(deep)


def test_signaling_payloads_are_checked_before_their_schema() -> None:
    with pytest.raises(ValidationError):
        load(JoinSchema(), {"consultationId": "c-1\x00"})
