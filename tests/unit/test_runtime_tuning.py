"""controlplane/runtime.py: the collector is tuned as documented, and its pauses
are reported.  Run in a child process: freezing this test process would leak."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _child(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_tune_gc_freezes_what_exists_and_raises_the_young_threshold() -> None:
    out = _child(
        """
        import gc
        from controlplane.runtime import tune_gc
        before = gc.get_freeze_count()
        tune_gc(12345)
        print(before, gc.get_freeze_count() > 10000, gc.get_threshold())
        """
    )
    assert out == "0 True (12345, 10, 10)"


def test_collections_are_reported_with_their_generation_and_duration() -> None:
    out = _child(
        """
        import gc
        from controlplane.runtime import watch_gc_pauses
        seen = []
        stop = watch_gc_pauses(lambda generation, seconds: seen.append((generation, seconds)))
        gc.collect(2)
        stop()
        gc.collect(2)
        print(len(seen), seen[0][0], 0 <= seen[0][1] < 5)
        """
    )
    assert out == "1 2 True"


def test_the_event_loop_is_uvloop_unless_asked_otherwise() -> None:
    out = _child(
        """
        from controlplane.runtime import new_event_loop
        print(type(new_event_loop("uvloop")).__module__, type(new_event_loop("asyncio")).__module__)
        """
    )
    assert out.split()[0].startswith("uvloop") and out.split()[1].startswith("asyncio")
