"""A join that asks to receive (``join``'s ``receive``): its ack carries a receive
transport and the consumers of the room's producers, made as ``createTransport``
and ``consume`` would make them, so a subscriber goes from the join ack straight
to ``connectTransport`` and ``resumeConsumer`` (two round trips fewer).

The join stands whatever happens here: what could not be made is named by an
``error`` in ``receive``, and the client makes it with the usual events."""

from __future__ import annotations

from typing import Any

import structlog

from controlplane.auth import RoomClaims
from controlplane.backends import OUTAGE_ERRORS
from controlplane.media.admission import WAITING
from controlplane.media.consumers import Consumers
from controlplane.media.membership import Membership
from controlplane.media.participants import LocalParticipants
from controlplane.media.room_state import RoomState
from controlplane.media.routers import RoomRouters
from controlplane.media.transports import Transports
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class ReadyReceive:
    def __init__(
        self,
        membership: Membership,
        participants: LocalParticipants,
        transports: Transports,
        consumers: Consumers,
        state: RoomState,
        routers: RoomRouters,
    ) -> None:
        self._membership = membership
        self._participants = participants
        self._transports = transports
        self._consumers = consumers
        self._state = state
        self._routers = routers

    async def join(
        self, sid: str, claims: RoomClaims, room_id: str, receive: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The ``join`` event: the membership's join, and with ``receive`` its ack's
        ``receive`` part."""
        joined = await self._membership.join(sid, claims, room_id)
        if receive is not None:
            waiting = joined["admission"]["state"] == WAITING
            joined["receive"] = await self.prepare(sid, receive, waiting)
        return joined

    async def router_rtp_capabilities(self, sid: str, claims: RoomClaims) -> dict[str, Any]:
        """The ``getRouterRtpCapabilities`` event: the participant's router's once
        joined; before the join, those of the token's consultation room if it is
        open (a client loads its device with them and joins with ``receive``); the
        first to join gets them in its join ack."""
        if self._participants.find(sid) is not None:
            return await self._membership.router_rtp_capabilities(sid)
        room = await self._state.get_room(claims.room_id)
        if room is None:
            raise ApiError(
                ErrorCode.NOT_JOINED,
                "the consultation's room is not open yet: the join ack carries them",
            )
        return {"routerRtpCapabilities": await self._routers.capabilities(room)}

    async def prepare(self, sid: str, receive: dict[str, Any], waiting: bool) -> dict[str, Any]:
        """``{transport?, consumers, skipped, error?}``: ``transport`` as the
        ``createTransport`` ack, ``consumers`` and ``skipped`` as the ``consume``
        ack (none for a participant in the waiting room)."""
        ready: dict[str, Any] = {"consumers": [], "skipped": []}
        try:
            ready["transport"] = await self._transports.create(sid, "recv", receive["forceTcp"])
            if not waiting:
                ready.update(await self._consumers.consume(sid, receive["rtpCapabilities"], None))
        except ApiError as exc:
            log.info("join_receive_incomplete", code=str(exc.code))
            ready.update(exc.to_payload())
        except OUTAGE_ERRORS as exc:
            log.warning("join_receive_incomplete", error=type(exc).__name__)
            unavailable = ApiError(
                ErrorCode.SERVICE_UNAVAILABLE, "the service is briefly unavailable; retry"
            )
            ready.update(unavailable.to_payload())
        except Exception:
            # The participant has joined: the join is answered, and this part says
            # it failed (the log has the trace, the client only the code).
            log.exception("join_receive_failed")
            ready.update(ApiError(ErrorCode.INTERNAL_ERROR, "internal error").to_payload())
        return ready
