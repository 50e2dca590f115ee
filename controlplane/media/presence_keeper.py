"""The background task that keeps presence true: this instance's heartbeat,
removal of participants whose resume window passed, take-over of the
participants of instances that died, live state put back after Redis lost it
(see reassertion), TTLs on the live state this instance serves (so state
nobody serves any more expires on its own), and rooms nobody is in closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from controlplane.media.membership import Membership
from controlplane.media.participants import LocalParticipants
from controlplane.media.presence import HEARTBEAT_INTERVAL, Presence
from controlplane.media.reassertion import Reassertion
from controlplane.media.resumption import Resumption
from controlplane.media.room_state import RoomState

log = structlog.get_logger(__name__)

TAKE_OVER_INTERVAL = 3.0
TTL_REFRESH_INTERVAL = 10.0
REASSERT_INTERVAL = 0.5


class PresenceKeeper:
    def __init__(
        self,
        presence: Presence,
        resumption: Resumption,
        membership: Membership,
        participants: LocalParticipants,
        state: RoomState,
        reassertion: Reassertion,
    ) -> None:
        self._presence = presence
        self._reassertion = reassertion
        self._resumption = resumption
        self._membership = membership
        self._participants = participants
        self._state = state
        # Live state outlives any resume window, and is refreshed far more often.
        self.key_ttl = int(max(120.0, 3 * presence.window + 60))
        self._next: dict[str, float] = {}
        # Instances seen without a heartbeat, and since when (see _take_over).
        self._suspects: dict[str, float] = {}

    async def run(self, interval: float = 0.5) -> None:
        while True:
            await self.tick(time.time())
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """This instance is going away on purpose (after draining)."""
        await self._presence.stop_beating()

    async def tick(self, now: float) -> None:
        await self._every("beat", HEARTBEAT_INTERVAL, now, self._presence.beat)
        await self._every("reassert", REASSERT_INTERVAL, now, self._reassertion.check)
        await self._every("expire", 0.0, now, lambda: self._expire(now))
        await self._every("take_over", TAKE_OVER_INTERVAL, now, self._take_over)
        await self._every("ttl", TTL_REFRESH_INTERVAL, now, self._refresh_ttls)
        await self._every("sweep", TTL_REFRESH_INTERVAL, now, lambda: self._sweep_rooms(now))

    async def _every(
        self, name: str, period: float, now: float, step: Callable[[], Awaitable[object]]
    ) -> None:
        if now < self._next.get(name, 0.0):
            return
        try:
            await step()
            self._next[name] = now + period
        except Exception as exc:  # Redis away: try again on the next tick
            log.warning("presence_step_failed", step=name, error=type(exc).__name__)

    async def _expire(self, now: float) -> None:
        for room_id, participant_id in await self._presence.due(now):
            await self._membership.expire(room_id, participant_id, now)

    async def _take_over(self) -> None:
        """An instance is dead once it has had no heartbeat for two checks in a row:
        after a Redis pause every heartbeat has expired at once, and live instances
        beat again within HEARTBEAT_INTERVAL."""
        now = time.monotonic()
        dead = set(await self._presence.dead_instances())
        self._suspects = {i: t for i, t in self._suspects.items() if i in dead}
        for instance_id in dead:
            since = self._suspects.setdefault(instance_id, now)
            if now - since >= 1.5 * HEARTBEAT_INTERVAL:
                await self._resumption.take_over(instance_id)
                self._suspects.pop(instance_id, None)

    async def _refresh_ttls(self) -> None:
        for room_id, members in self._participants.by_room().items():
            for router_id in {p.router_id for p in members}:
                participant_ids = [p.participant_id for p in members if p.router_id == router_id]
                await self._state.refresh_ttl(room_id, router_id, participant_ids, self.key_ttl)

    async def _sweep_rooms(self, now: float) -> None:
        for room_id in await self._state.room_ids():
            await self._membership.close_if_abandoned(room_id, now - self.key_ttl)
