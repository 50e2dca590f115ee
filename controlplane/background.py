"""Stopping the serving process's background tasks, so that shutdown cannot hang.

On Python 3.11 a task's cancellation can be lost: ``asyncio.wait_for`` returns the
inner result instead of raising ``CancelledError`` when the awaited operation
finished in the same loop turn as the cancel (fixed in 3.12, whose ``wait_for``
is built on ``asyncio.timeout``).  redis-py wraps every command's send in
``wait_for``, so a background loop cancelled during a Redis call went on to its
next pass: the control plane, told to stop, never exited (a control plane whose
port was taken hung in clean-up until it was killed).  ``stop_tasks`` cancels
again until each task has ended, and gives up on a task after ``timeout``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger()

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
