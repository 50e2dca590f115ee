"""Retention periods per data class: defaults with their legal basis, overrides,
and the refusals of what cannot be configured."""

from __future__ import annotations

import pytest

from controlplane.clinical.retention_policy import (
    DATA_CLASSES,
    TWENTY_YEARS,
    parse_data_retention,
)
from controlplane.config import ConfigError, Settings
from tests.unit.test_settings import REQUIRED


def test_defaults_cover_every_class_with_a_basis() -> None:
    periods = parse_data_retention("")
    assert periods["clinical_record"] == TWENTY_YEARS >= 20 * 365 * 86400
    assert periods["alert"] == 365 * 86400
    assert set(periods) == set(DATA_CLASSES)
    assert all(c.basis and c.enforced_by in ("job", "redis", "kept") for c in DATA_CLASSES.values())


def test_overrides_apply_to_the_named_classes_only() -> None:
    periods = parse_data_retention("alert=90d, clinical_record=25y")
    assert periods["alert"] == 90 * 86400
    assert periods["clinical_record"] == 25 * 365 * 86400
    assert periods["audit"] == TWENTY_YEARS


@pytest.mark.parametrize(
    "spec",
    ["alert=90", "alert=-1d", "notes=1y", "recording=1y", "live_state=2h", "alert"],
)
def test_what_cannot_be_configured_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_data_retention(spec)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEMED_RETENTION", "alert=soon"),
        ("TELEMED_AUDIT_VERIFY_INTERVAL", "0"),
        ("TELEMED_AUDIT_FULL_VERIFY_INTERVAL", "10"),  # shorter than the incremental one
    ],
)
def test_a_bad_setting_stops_the_control_plane_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**REQUIRED, name: value})
