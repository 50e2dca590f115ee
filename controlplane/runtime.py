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

Stopping: ``stop_tasks`` ends the background tasks so that shutdown cannot hang.
On Python 3.11 a task's cancellation can be lost: ``asyncio.wait_for`` returns the
inner result instead of raising ``CancelledError`` when the awaited operation
finished in the same loop turn as the cancel (fixed in 3.12, whose ``wait_for`` is
built on ``asyncio.timeout``).  redis-py wraps every command's send in
``wait_for``, so a background loop cancelled during a Redis call went on to its
next pass and the control plane, told to stop, never exited (one whose port was
taken hung in clean-up until it was killed).  ``stop_tasks`` cancels again until
each task has ended, and gives up on a task after ``timeout``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
import uvloop

log = structlog.get_logger()

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


# Between cancels: long enough for a cancelled task's clean-up to run.
RECANCEL_EVERY = 0.1


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], timeout: float = 5.0) -> list[str]:
    """Cancel ``tasks`` and wait until they have all ended, cancelling again any
    that carried on (a lost cancellation).  Returns the names of tasks still
    running after ``timeout`` seconds (logged; the caller goes on without them)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY, left))
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.warning("background_task_failed", task=task.get_name(), error=type(error).__name__)
    names = sorted(task.get_name() for task in pending)
    if names:
        log.error("background_tasks_not_stopped", tasks=names, timeout=timeout)
    return names
