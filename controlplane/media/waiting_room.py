"""The waiting room (issue 13): the server alone decides who of a consultation
sends to and receives from the others (states and rules: admission.py).

A waiting participant is joined (it may make transports and send, to check its
devices and connection) but is in no broadcast group of the room: nobody is told
of it, nobody consumes its producers (RoomState.producers_in_room leaves them
out, so neither does a recording), and it consumes nothing (Consumers refuses
with NOT_ADMITTED).  It hears only ``admission`` (its own state) and
``clinicianPresence`` (whether a clinician is in the call to let it in).

The clinicians of the room (a group of their own) get ``waitingList`` whenever
it changes, and in their join and resume answers.  Their decisions
(``admitParticipant``, ``denyParticipant``, ``removeParticipant``) take effect at
once: an admitted participant gets the room's peers and producers and the room
gets it; one sent back to waiting loses every consumer to and from it; one
removed or denied is put out and its token banned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from controlplane.auth import CLINICIAN_ROLES, RoomClaims
from controlplane.media.admission import (
    ADMITTED,
    DENIED,
    IN_CALL,
    LEFT,
    REMOVED,
    WAITING,
    Admission,
    AdmissionStore,
    advanced,
    decided,
    on_arrival,
)
from controlplane.media.participants import LocalParticipants
from controlplane.media.ports import JoinGate, Notifier
from controlplane.media.room_state import ParticipantRecord, RoomState, producer_payload
from controlplane.media.routers import RoomRouters
from controlplane.placement.sfu_client import SfuError
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)


class PutOut(Protocol):
    async def __call__(
        self, room_id: str, participant_id: str, reason: str, *, sid: str
    ) -> bool: ...


def clinicians_group(room_id: str) -> str:
    return f"{room_id}#clinicians"


def waiting_group(room_id: str) -> str:
    return f"{room_id}#waiting"


@dataclass(frozen=True)
class Arrival:
    """A participant's admission as it joins, and its audit entry on the way to
    the database (None when its state did not change)."""

    admission: Admission
    stored: Awaitable[Any] | None


class WaitingRoom:
    def __init__(
        self,
        store: AdmissionStore,
        state: RoomState,
        participants: LocalParticipants,
        routers: RoomRouters,
        notifier: Notifier,
        patients_wait: frozenset[str],
        gate: JoinGate,
    ) -> None:
        self._patients_wait = patients_wait
        self._gate = gate
        self._store = store
        self._state = state
        self._participants = participants
        self._routers = routers
        self._notifier = notifier
        # Set by MediaServices.build: puts a participant out of the room
        # (Membership.remove) and what follows a new producer (Producers.listeners).
        self.put_out: PutOut | None = None
        self.producer_listeners: list[Callable[[str], None]] = []

    # ---- arrival -------------------------------------------------------------------

    async def arrive(
        self, room_id: str, claims: RoomClaims, call_type: str, session_id: str
    ) -> Arrival:
        """A participant joins: its admission (FORBIDDEN with a banned token)."""
        by = ""

        async def step(previous: Admission | None) -> Admission:
            nonlocal by
            state, by = on_arrival(previous, claims.role, call_type, self._patients_wait)
            current = previous or Admission(
                peerId=claims.participant_id,
                role=claims.role,
                displayName=claims.display_name,
                state="",
                version=0,
                since=0.0,
                by="",
                tokenId=claims.token_id,
            )
            return replace(advanced(current, state, by), tokenId=claims.token_id)

        previous, arrived = await self._store.change(
            room_id, claims.participant_id, step, token_id=claims.token_id
        )
        assert arrived is not None
        before = previous.state if previous else ""
        # Queued as soon as the change is stored; the join awaits it with its own
        # entry, before it is answered.
        if arrived.state == WAITING and before != WAITING:
            by_whom = claims.participant_id  # it put itself in the waiting room
        elif by == "policy" and before != arrived.state:
            by_whom = "policy"
        else:
            return Arrival(arrived, None)
        return Arrival(
            arrived,
            self._gate.admission_entry(
                room_id, session_id, claims.participant_id, claims.role, arrived.state, by_whom
            ),
        )

    async def joined(self, sid: str, room_id: str, admission: Admission) -> dict[str, Any]:
        """After a join or resume: the groups the connection belongs to, and what
        the join answer adds (its admission; for a clinician, the waiting list)."""
        extra: dict[str, Any] = {"admission": admission.public()}
        if admission.role in CLINICIAN_ROLES:
            await self._notifier.enter_room(sid, clinicians_group(room_id))
            extra["waiting"] = await self.waiting_list(room_id)
            # Clinicians never wait: this one is in the call.
            await self._tell_presence(room_id, present=True)
        if admission.state == WAITING:
            await self._notifier.enter_room(sid, waiting_group(room_id))
            await self._tell_clinicians(room_id)
            extra["clinicianPresent"] = await self._clinician_present(room_id)
        return extra

    async def current(self, room_id: str, participant_id: str) -> Admission | None:
        return await self._store.get(room_id, participant_id)

    async def is_waiting(self, room_id: str, participant_id: str) -> bool:
        return participant_id in await self._state.waiting_ids(room_id)

    async def waiting_list(self, room_id: str) -> list[dict[str, Any]]:
        return [a.public() for a in await self._store.all(room_id) if a.state == WAITING]

    # ---- decisions ------------------------------------------------------------------

    async def decide(self, sid: str, peer_id: str, decision: str) -> dict[str, Any]:
        """A clinician in the call admits, denies, sends back to waiting or removes."""
        me = self._participants.get(sid)
        if me.claims.role not in CLINICIAN_ROLES:
            raise ApiError(ErrorCode.FORBIDDEN, "only a clinician may let participants in or out")
        room_id = me.room_id
        if await self.is_waiting(room_id, me.participant_id):
            raise ApiError(ErrorCode.NOT_ADMITTED, "you are in the waiting room")
        if peer_id == me.participant_id:
            raise ApiError(ErrorCode.CONFLICT, "you cannot decide on yourself")
        record: ParticipantRecord | None = None

        async def step(current: Admission | None) -> Admission:
            nonlocal record
            if current is None:
                raise ApiError(ErrorCode.NOT_FOUND, "no such participant in this consultation")
            if current.role in CLINICIAN_ROLES and decision != "remove":
                raise ApiError(ErrorCode.CONFLICT, "clinicians do not wait")
            target = decided(current, decision)
            record = await self._state.get_participant(room_id, peer_id)
            if target == ADMITTED and record is not None:
                target = IN_CALL  # connected now: straight into the call
            return advanced(current, target, me.participant_id)

        current, changed = await self._store.change(room_id, peer_id, step)
        assert current is not None and changed is not None
        if changed is current:
            return {"peerId": peer_id, **current.public(), "changed": False}
        log.info(
            "admission_changed",
            room_id=room_id,
            participant_id=peer_id,
            state=changed.state,
            version=changed.version,
        )
        await self._gate.record_admission(
            room_id, me.participant_id, me.claims.role, peer_id, changed.state
        )
        await self._apply(room_id, current, changed, record.sid if record else "")
        await self._tell_clinicians(room_id)
        return {**changed.public(), "changed": True}

    async def _apply(self, room_id: str, before: Admission, after: Admission, sid: str) -> None:
        """What a change means for the participant's media and for the room."""
        news = after.public()
        if after.state == IN_CALL:
            await self._let_in(room_id, after, sid)
        elif after.state == WAITING and before.state in (ADMITTED, IN_CALL):
            await self._back_to_waiting(room_id, after, sid)
        elif after.state in (DENIED, REMOVED):
            if sid:
                await self._notifier.to_peer(sid, "admission", news)
            await self._put_out(room_id, after.peerId, sid, after.state)
        elif sid:
            await self._notifier.to_peer(sid, "admission", news)

    async def _let_in(self, room_id: str, admission: Admission, sid: str) -> None:
        """The room learns of the participant; a connected one learns of the room
        (one that is reconnecting gets it all in its resume answer)."""
        pid = admission.peerId
        if sid:
            view = await self._state.view(room_id)
            hidden = view.waiting | {pid}
            others = [p for p in view.participants if p.peerId not in hidden]
            producers = [p for p in view.producers if p.peerId != pid]
            await self._notifier.leave_room(sid, waiting_group(room_id))
            await self._notifier.enter_room(sid, room_id)
            await self._notifier.to_peer(
                sid,
                "admission",
                {
                    **admission.public(),
                    "peers": [
                        {"peerId": p.peerId, "role": p.role, "displayName": p.displayName}
                        for p in others
                    ],
                    "producers": [producer_payload(p) for p in producers],
                },
            )
        await self._notifier.to_room(
            room_id,
            "peerJoined",
            {"peerId": pid, "role": admission.role, "displayName": admission.displayName},
            skip_sid=sid or None,
        )
        for own in await self._state.producers_of(room_id, pid):
            await self._notifier.to_room(
                room_id, "newProducer", producer_payload(own), skip_sid=sid or None
            )
        for listener in self.producer_listeners:
            listener(room_id)  # e.g. a recording takes the newcomer in

    async def _back_to_waiting(self, room_id: str, admission: Admission, sid: str) -> None:
        """Every consumer from and to the participant goes (the SFU tells each
        owner, on whichever instance it is); the room sees it leave."""
        pid = admission.peerId
        own = {p.producerId for p in await self._state.producers_of(room_id, pid)}
        closing = []
        for peer in await self._state.participants(room_id):
            for consumer in await self._state.consumers_of(room_id, peer.peerId):
                if peer.peerId == pid or consumer.producerId in own:
                    closing.append(consumer.consumerId)
        room = await self._state.get_room(room_id)
        if room is not None and closing:
            try:
                client = await self._routers.client_of(room)
                for consumer_id in closing:
                    await client.request(
                        "closeConsumer", {"consumerId": consumer_id, "notify": True}
                    )
            except SfuError as exc:
                log.warning("waiting_room_consumers_not_closed", room_id=room_id, error=str(exc))
        if sid:
            await self._notifier.leave_room(sid, room_id)
            await self._notifier.enter_room(sid, waiting_group(room_id))
            await self._notifier.to_peer(
                sid, "admission", {**admission.public(), "clinicianPresent": True}
            )
        await self._notifier.to_room(room_id, "peerLeft", {"peerId": pid, "reason": "waiting_room"})

    async def _put_out(self, room_id: str, participant_id: str, sid: str, reason: str) -> bool:
        if self.put_out is None:
            return False
        removed = bool(await self.put_out(room_id, participant_id, reason, sid=sid))
        if sid:
            await self._notifier.leave_room(sid, room_id)
            await self._notifier.leave_room(sid, waiting_group(room_id))
            await self._notifier.disconnect(sid)
        return removed

    # ---- departures and removals from outside ---------------------------------------

    async def departed(self, room_id: str, participant_id: str) -> None:
        """A participant left or was removed from the room (a departure listener)."""

        async def step(current: Admission | None) -> Admission | None:
            if current is not None and current.state == WAITING:
                return None  # it never got in: it waits afresh next time
            if current is not None and current.state in (ADMITTED, IN_CALL):
                return advanced(current, LEFT, current.by)
            return current

        current, _ = await self._store.change(room_id, participant_id, step)
        if current is None:
            return
        if current.role in CLINICIAN_ROLES:
            await self._tell_presence(room_id)
        elif current.state == WAITING:
            await self._tell_clinicians(room_id)

    async def session_ended(self, room_id: str) -> None:
        await self._store.clear(room_id)

    async def expel(self, room_id: str, participant_id: str, reason: str) -> bool:
        """Out of the room now, its token banned (the participant was taken off the
        session): True if it was in the room."""

        async def step(current: Admission | None) -> Admission | None:
            if current is not None and current.state != REMOVED:
                return advanced(current, REMOVED, "session")
            return current

        await self._store.change(room_id, participant_id, step)
        record = await self._state.get_participant(room_id, participant_id)
        if record is None:
            return False
        if record.sid:
            await self._notifier.to_peer(
                record.sid, "admission", {"peerId": participant_id, "state": REMOVED}
            )
        return await self._put_out(room_id, participant_id, record.sid, reason)

    # ---- news ------------------------------------------------------------------------

    async def _clinician_present(self, room_id: str) -> bool:
        return any(p.role in CLINICIAN_ROLES for p in await self._state.participants(room_id))

    async def _tell_clinicians(self, room_id: str) -> None:
        await self._notifier.to_room(
            clinicians_group(room_id), "waitingList", {"waiting": await self.waiting_list(room_id)}
        )

    async def _tell_presence(self, room_id: str, present: bool | None = None) -> None:
        """``present``: known already (a clinician just joined or resumed)."""
        if present is None:
            present = await self._clinician_present(room_id)
        await self._notifier.to_room(
            waiting_group(room_id), "clinicianPresence", {"present": present}
        )
