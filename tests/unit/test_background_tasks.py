"""controlplane/runtime.py: a background loop whose cancellation Python 3.11
lost (``asyncio.wait_for`` returning a result that was ready in the same turn as
the cancel) still ends when the serving process stops."""

from __future__ import annotations

import asyncio

from controlplane.runtime import stop_tasks


async def _polling_loop(ready: asyncio.Queue[asyncio.Future[None]]) -> None:
    """A loop like the quality monitor's: each pass awaits an operation through
    ``wait_for`` (as redis-py does for every command it sends)."""
    loop = asyncio.get_running_loop()
    while True:
        operation: asyncio.Future[None] = loop.create_future()
        await ready.put(operation)
        await asyncio.wait_for(operation, 5)


async def _cancel_as_the_operation_finishes(
    task: asyncio.Task[None], operation: asyncio.Future[None]
) -> None:
    operation.set_result(None)
    task.cancel()
    await asyncio.sleep(0.05)


async def test_a_cancel_lost_in_wait_for_leaves_the_loop_running() -> None:
    """The fault stop_tasks handles, reproduced with asyncio itself: one cancel,
    delivered as the awaited operation completes, does not end the loop."""
    ready: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
    task = asyncio.create_task(_polling_loop(ready))
    await _cancel_as_the_operation_finishes(task, await ready.get())
    assert not task.done()  # the cancel was lost: the loop began another pass
    assert ready.qsize() == 1
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()


async def test_stop_tasks_ends_a_loop_whose_cancel_was_lost() -> None:
    ready: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
    task = asyncio.create_task(_polling_loop(ready), name="poller")
    operation = await ready.get()
    operation.set_result(None)  # completes in the same turn as the first cancel
    left = await stop_tasks([task], timeout=2.0)
    assert left == []
    assert task.cancelled()
    assert ready.qsize() == 1  # the first cancel was lost: it took a second


async def test_stop_tasks_reports_a_task_that_will_not_stop() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    quick = asyncio.create_task(asyncio.sleep(10), name="quick")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    left = await stop_tasks([task, quick], timeout=0.3)
    elapsed = loop.time() - started
    assert left == ["stubborn"]
    assert quick.cancelled()
    assert 0.3 <= elapsed < 1.0
    stop.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.done()
