"""The spec's session types and how long each may run."""

from __future__ import annotations

from controlplane.media.profiles import CALL_TYPES

# Every media profile's call type except "specialist", which is a capture
# profile rather than a kind of session.
SESSION_TYPES = tuple(t for t in CALL_TYPES if t != "specialist")

# Longest a session of each type may run (seconds) before it is ended.
MAX_DURATION = {
    "consultation": 60 * 60,
    "follow_up": 30 * 60,
    "emergency": 2 * 60 * 60,
    "mental_health": 90 * 60,
    "group_therapy": 2 * 60 * 60,
    "second_opinion": 60 * 60,
}
