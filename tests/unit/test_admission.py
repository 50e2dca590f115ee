"""The waiting room's state machine (controlplane/media/admission.py), pure."""

from __future__ import annotations

import pytest

from controlplane.media.admission import (
    ADMITTED,
    DENIED,
    IN_CALL,
    LEFT,
    REMOVED,
    WAITING,
    Admission,
    advanced,
    decided,
    on_arrival,
)
from schemas.errors import ApiError

WAITS = frozenset({"consultation", "follow_up"})


def record(state: str, admitted_before: bool = False) -> Admission:
    return Admission("pt", "patient", "P", state, 3, 0.0, "", "jti-1", admitted_before)


@pytest.mark.parametrize(
    ("role", "call_type", "expected"),
    [
        ("physician", "consultation", IN_CALL),
        ("nurse", "consultation", IN_CALL),
        ("patient", "consultation", WAITING),
        ("patient", "emergency", IN_CALL),  # the policy admits an emergency's patient
        ("companion", "emergency", WAITING),
        ("interpreter", "consultation", WAITING),
    ],
)
def test_who_waits_on_arrival(role: str, call_type: str, expected: str) -> None:
    assert on_arrival(None, role, call_type, WAITS)[0] == expected


def test_admission_holds_for_the_session_but_not_after_removal() -> None:
    assert on_arrival(record(LEFT, True), "patient", "consultation", WAITS)[0] == IN_CALL
    assert on_arrival(record(REMOVED, True), "patient", "consultation", WAITS)[0] == WAITING
    assert on_arrival(record(WAITING), "patient", "consultation", WAITS)[0] == WAITING


@pytest.mark.parametrize(
    ("state", "decision", "expected"),
    [
        (WAITING, "admit", ADMITTED),
        (IN_CALL, "admit", IN_CALL),
        (WAITING, "deny", DENIED),
        (IN_CALL, "toWaiting", WAITING),
        (IN_CALL, "remove", REMOVED),
        (REMOVED, "remove", REMOVED),
    ],
)
def test_decisions(state: str, decision: str, expected: str) -> None:
    assert decided(record(state), decision) == expected


@pytest.mark.parametrize(
    ("state", "decision"),
    [(DENIED, "admit"), (REMOVED, "admit"), (IN_CALL, "deny"), (DENIED, "toWaiting")],
)
def test_impossible_decisions_are_conflicts(state: str, decision: str) -> None:
    with pytest.raises(ApiError) as refused:
        decided(record(state), decision)
    assert refused.value.code == "CONFLICT"


def test_a_change_bumps_the_version_and_a_repeat_changes_nothing() -> None:
    waiting = record(WAITING)
    admitted = advanced(waiting, IN_CALL, "dr")
    assert (admitted.version, admitted.by, admitted.admittedBefore) == (4, "dr", True)
    assert advanced(admitted, IN_CALL, "someone-else") is admitted
