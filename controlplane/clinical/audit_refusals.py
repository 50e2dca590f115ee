"""Refusals repeated within a window become one audit entry, not one each.

The first refusal of a kind (who, what, which code; for a known actor, on which
resource) is written at once with its details; the ones that follow within the
window are counted, and one summary entry per kind (``repeated``: how many) is
written when the window ends.  A flood of refused requests thus writes a few rows
per minute, whoever sends it, while nothing refused goes unrecorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
# Kinds tracked at once; beyond it, refusals are counted under one overflow kind.
MAX_KINDS = 10_000

RefusalKind = tuple[
    str | None, str | None, str, str, str | None
]  # actor, role, action, code, resource
OVERFLOW: RefusalKind = (None, None, "audit.refusals_overflow", "RATE_LIMITED", None)


@dataclass
class _Window:
    started: float
    repeated: int = 0


class RefusalWindows:
    def __init__(self, window: float = WINDOW_SECONDS, max_kinds: int = MAX_KINDS) -> None:
        self.window = window
        self._max_kinds = max_kinds
        self._open: dict[RefusalKind, _Window] = {}

    def first_in_window(self, kind: RefusalKind, now: float | None = None) -> bool:
        """True when this refusal opens a window (write it); else it is counted."""
        now = time.monotonic() if now is None else now
        current = self._open.get(kind)
        if current is not None and now - current.started < self.window:
            current.repeated += 1
            return False
        if current is None and len(self._open) >= self._max_kinds:
            overflow = self._open.setdefault(OVERFLOW, _Window(now))
            overflow.repeated += 1
            return False
        if current is not None and current.repeated:
            # The old window ended without a flush: keep its count for the next one.
            self._open[kind] = _Window(now, current.repeated)
            return True
        self._open[kind] = _Window(now)
        return True

    def ended(
        self, now: float | None = None, *, all_windows: bool = False
    ) -> list[tuple[RefusalKind, int]]:
        """Kinds whose window ended (all of them with ``all_windows``) and how many
        refusals each counted beyond the first; they are forgotten."""
        now = time.monotonic() if now is None else now
        done: list[tuple[RefusalKind, int]] = []
        for kind, current in list(self._open.items()):
            if all_windows or now - current.started >= self.window:
                del self._open[kind]
                if current.repeated:
                    done.append((kind, current.repeated))
        return done

    def restore(self, kind: RefusalKind, repeated: int, now: float | None = None) -> None:
        """Put back counts that could not be written (they go out with a later flush)."""
        now = time.monotonic() if now is None else now
        current = self._open.setdefault(kind, _Window(now - self.window))
        current.repeated += repeated
