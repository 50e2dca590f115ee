"""Retention periods per session type (pure parsing)."""

from __future__ import annotations

import pytest

from controlplane.clinical.recording_retention import DEFAULT_RETENTION_SECONDS, parse_retention


def test_every_type_defaults_to_twenty_years() -> None:
    periods = parse_retention("")
    assert set(periods) >= {"consultation", "emergency", "follow_up"}
    assert all(p == DEFAULT_RETENTION_SECONDS for p in periods.values())
    assert DEFAULT_RETENTION_SECONDS // 86400 == 20 * 365 + 5


def test_overrides_take_units() -> None:
    periods = parse_retention("consultation=365d, emergency=25y,second_opinion=90s")
    assert periods["consultation"] == 365 * 86400
    assert periods["emergency"] == 25 * 365 * 86400
    assert periods["second_opinion"] == 90
    assert periods["follow_up"] == DEFAULT_RETENTION_SECONDS


@pytest.mark.parametrize("spec", ["consulta=1d", "consultation=1w", "consultation=-1d", "x"])
def test_unknown_types_and_bad_periods_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_retention(spec)
