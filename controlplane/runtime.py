"""How the serving process runs: its event loop and its garbage collector.

The collector is tuned because its full collections stopped the event loop: with
1,000 Socket.IO connections a generation-2 pass walked some 300,000 objects (the
imported modules' 130,000 among them) and held the loop for 100-230 ms, which
every event waiting then paid (bench/signaling_scale.py --stock: cheap events
p99 190-330 ms, 7-9 ms tuned).  Two settings of CPython's ``gc`` module fix it:

- ``gc.freeze()`` once the app is built: what the imports and the app made lives
  as long as the process, so no full collection needs to walk it again;
- a larger first-generation threshold: short-lived objects (a request's dicts,
  futures and frames) die before any collection sees them, so far fewer survive
  into the older generations and full collections become rare.

Pauses are measured (``telemed_gc_pause_seconds``) so that an operator sees them.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import uvloop

# Objects allocated (net) before a young collection; CPython's default is 700.
GC_YOUNG_THRESHOLD = 20_000


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """ "uvloop" (libuv: socket reads and writes, timers cost less CPU) or "asyncio"."""
    return uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()


def tune_gc(young_threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Call once everything long-lived is built (after imports and app set-up)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def watch_gc_pauses(observe: Callable[[int, float], None]) -> Callable[[], None]:
    """Report each collection's generation and duration (seconds); returns the
    function that stops it."""
    started = 0.0

    def callback(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            observe(int(info["generation"]), time.perf_counter() - started)

    gc.callbacks.append(callback)
    return lambda: gc.callbacks.remove(callback)
