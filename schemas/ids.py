"""Identifiers that cross the system's edges: room, participant, clinic and
clinician ids are opaque strings of a bounded alphabet (mediasoup object ids are
UUIDs and validated as such).  One definition for tokens, schemas and routes."""

from __future__ import annotations

import re
import uuid

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    """A room, participant, clinic or clinician id."""
    return isinstance(value, str) and _ID.match(value) is not None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
