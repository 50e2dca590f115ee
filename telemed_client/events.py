"""What the server pushed to a peer (and the peer's own connection events), in
arrival order, with a way to wait for one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PeerEvent:
    """An event the server pushed (``at``: time.monotonic() when it arrived)."""

    name: str
    data: Any
    at: float


Predicate = Callable[[Any], bool]


@dataclass
class EventLog:
    events: list[PeerEvent] = field(default_factory=list)
    _waiters: list[tuple[str, Predicate, asyncio.Future[Any]]] = field(default_factory=list)

    def record(self, event: str, data: Any = None) -> None:
        self.events.append(PeerEvent(event, data, time.monotonic()))
        for name, predicate, future in list(self._waiters):
            if name == event and not future.done() and predicate(data):
                future.set_result(data)

    async def wait_for(self, name: str, predicate: Predicate, timeout: float) -> Any:
        """The first event ``name`` (already seen or still to come) matching ``predicate``."""
        for event in self.events:
            if event.name == name and predicate(event.data):
                return event.data
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter = (name, predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(waiter)
