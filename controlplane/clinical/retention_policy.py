"""Retention periods per data class, their defaults and legal basis.

``TELEMED_RETENTION="clinical_record=20y,alert=365d"`` overrides the defaults
(units s, m, h, d, y).  Recordings have periods per session type of their own
(``TELEMED_RECORDING_RETENTION``, recording_retention.py).  Live state and quality
samples live in Redis and expire there (their periods are the keys' TTLs, shown
here so that one table documents every class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
_PERIOD = re.compile(r"^(\d+)([smhdy])$")
YEAR = 365 * 86400
TWENTY_YEARS = 20 * YEAR + 5 * 86400  # with leap days


@dataclass(frozen=True)
class DataClass:
    name: str
    default_seconds: int
    basis: str
    enforced_by: str  # "job": the retention job removes; "redis": key TTLs; "kept": never


DATA_CLASSES = {
    c.name: c
    for c in (
        DataClass(
            "clinical_record",
            TWENTY_YEARS,
            "medical record: kept at least 20 years from the last entry "
            "(Law 13.787/2018 art. 6; CFM Resolution 1.821/2007)",
            "job",
        ),
        DataClass(
            "recording",
            TWENTY_YEARS,
            "part of the medical record when filed there (CFM Resolution 2.314/2022); "
            "per session type in TELEMED_RECORDING_RETENTION",
            "job",
        ),
        DataClass(
            "consent",
            TWENTY_YEARS,
            "proof that processing was lawful, kept as long as the data it covers "
            "(LGPD art. 8 par. 2, art. 16 I)",
            "kept",
        ),
        DataClass(
            "audit",
            TWENTY_YEARS,
            "record of processing operations (LGPD art. 37), kept beside the medical "
            "record it documents; append-only and hash-chained, so never removed "
            "by the job (entries past due are counted)",
            "kept",
        ),
        DataClass(
            "alert",
            YEAR,
            "operational record; no longer than needed (LGPD art. 6 III, necessity)",
            "job",
        ),
        DataClass(
            "live_state",
            3600,
            "only while a call is served (Redis keys expire when no instance serves the room)",
            "redis",
        ),
        DataClass(
            "quality_sample",
            3600,
            "call-quality history for staff during and just after a call (Redis TTL, 1 hour)",
            "redis",
        ),
    )
}


def parse_period(text: str) -> int:
    match = _PERIOD.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r}: expected <n><s|m|h|d|y>")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_data_retention(spec: str) -> dict[str, int]:
    """Seconds per data class: the defaults, overridden by "class=<period>,...".
    Only classes the job enforces may be changed."""
    periods = {name: c.default_seconds for name, c in DATA_CLASSES.items()}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, period = part.partition("=")
        name = name.strip()
        if name not in DATA_CLASSES or name == "recording":
            raise ValueError(
                f"{part!r}: unknown data class (one of "
                f"{', '.join(n for n in DATA_CLASSES if n != 'recording')}; recordings: "
                "TELEMED_RECORDING_RETENTION)"
            )
        if DATA_CLASSES[name].enforced_by == "redis":
            raise ValueError(f"{part!r}: {name} expires in Redis; its period is fixed")
        periods[name] = parse_period(period)
    return periods
