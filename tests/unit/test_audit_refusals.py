"""Refusal windows: the first refusal of a kind is written, repeats are counted and
summarised once the window ends, nothing is lost (pure logic)."""

from __future__ import annotations

from controlplane.clinical.audit_refusals import OVERFLOW, RefusalWindows

KIND = (None, None, "api.auth", "UNAUTHORIZED", None)
OTHER = ("dr-1", "physician", "signaling.consume", "FORBIDDEN", "room-1")


def test_first_is_written_repeats_are_counted_until_the_window_ends() -> None:
    windows = RefusalWindows(window=60)
    assert windows.first_in_window(KIND, now=0)
    assert not any(windows.first_in_window(KIND, now=t) for t in range(1, 50))
    assert windows.first_in_window(OTHER, now=10)
    assert windows.ended(now=59) == []
    assert windows.ended(now=61) == [(KIND, 49)]  # OTHER had no repeats: nothing to add
    assert windows.ended(now=200) == []
    assert windows.first_in_window(KIND, now=201)  # a new window starts with a row


def test_a_window_that_ended_unflushed_carries_its_count_forward() -> None:
    windows = RefusalWindows(window=60)
    windows.first_in_window(KIND, now=0)
    windows.first_in_window(KIND, now=1)
    assert windows.first_in_window(KIND, now=70)
    assert windows.ended(now=200) == [(KIND, 1)]


def test_restored_counts_go_out_with_the_next_flush() -> None:
    windows = RefusalWindows(window=60)
    windows.restore(KIND, 7, now=100)
    assert windows.ended(now=100) == [(KIND, 7)]


def test_kinds_beyond_the_cap_are_counted_under_one_overflow_kind() -> None:
    windows = RefusalWindows(window=60, max_kinds=3)
    kinds = [("p", "patient", "signaling.consume", "FORBIDDEN", f"room-{i}") for i in range(10)]
    written = [windows.first_in_window(kind, now=0) for kind in kinds]
    assert written == [True] * 3 + [False] * 7
    assert dict(windows.ended(now=0, all_windows=True)) == {OVERFLOW: 7}
