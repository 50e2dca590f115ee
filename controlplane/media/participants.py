"""The participants whose Socket.IO connections this instance holds, and which
of them owns each transport, producer and consumer.

A participant's media objects live on the SFU and are mirrored in Redis
(room_state); this registry is the instance's own view, used to check
ownership before acting on an object and to route SFU notifications.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from controlplane.auth import RoomClaims
from controlplane.media.layers import LayerState
from controlplane.media.room_records import ParticipantRecord, RoomRecord
from schemas.errors import ApiError, ErrorCode


@dataclass
class Participant:
    """A connection (``sid``) that joined a room, and its media objects."""

    sid: str
    claims: RoomClaims
    room: RoomRecord  # as when it joined or resumed
    joined_at: float = field(default_factory=time.monotonic)
    # As in its Redis record (see reassertion: Redis may lose it).
    joined_at_wall: float = field(default_factory=time.time)
    epoch: int = 0
    resume_hash: str = ""
    first_media_seen: bool = False
    transports: dict[str, str] = field(default_factory=dict)  # id -> direction
    producers: dict[str, str] = field(default_factory=dict)  # id -> source
    consumers: dict[str, str] = field(default_factory=dict)  # id -> producer id
    consumer_kinds: dict[str, str] = field(default_factory=dict)  # id -> audio | video
    consumer_transports: dict[str, str] = field(default_factory=dict)  # id -> transport id
    producer_kinds: dict[str, str] = field(default_factory=dict)  # id -> audio | video
    paused: set[str] = field(default_factory=set)  # ids of paused producers and consumers
    layered: set[str] = field(default_factory=set)  # ids of its simulcast consumers
    layers: LayerState = field(default_factory=LayerState)

    @property
    def participant_id(self) -> str:
        return self.claims.participant_id

    @property
    def room_id(self) -> str:
        return self.room.roomId

    @property
    def node_id(self) -> str:
        return self.room.nodeId

    @property
    def router_id(self) -> str:
        return self.room.routerId

    @property
    def call_type(self) -> str:
        return self.room.callType

    def set_paused(self, object_id: str, paused: bool) -> None:
        if paused:
            self.paused.add(object_id)
        else:
            self.paused.discard(object_id)

    def own_transport(self, transport_id: str) -> str:
        """The direction of one of this participant's transports (NOT_FOUND otherwise)."""
        direction = self.transports.get(transport_id)
        if direction is None:
            raise ApiError(ErrorCode.NOT_FOUND, "transport not found")
        return direction

    def own_producer(self, producer_id: str) -> None:
        if producer_id not in self.producers:
            raise ApiError(ErrorCode.NOT_FOUND, "producer not found")

    def own_consumer(self, consumer_id: str) -> None:
        if consumer_id not in self.consumers:
            raise ApiError(ErrorCode.NOT_FOUND, "consumer not found")


def participant_record(
    participant: Participant, instance_id: str, window: float
) -> ParticipantRecord:
    """The Redis record of a connected participant, as this instance knows it."""
    return ParticipantRecord(
        peerId=participant.participant_id,
        role=participant.claims.role,
        displayName=participant.claims.display_name,
        sid=participant.sid,
        instance=instance_id,
        joinedAt=participant.joined_at_wall,
        epoch=participant.epoch,
        resumeHash=participant.resume_hash,
        resumeWindow=window,
    )


class LocalParticipants:
    def __init__(self) -> None:
        self._by_sid: dict[str, Participant] = {}
        self._transport_owner: dict[str, str] = {}  # transport id -> sid
        self._producer_owner: dict[str, str] = {}
        self._consumer_owner: dict[str, str] = {}

    # ---- connections ---------------------------------------------------------

    def get(self, sid: str) -> Participant:
        participant = self._by_sid.get(sid)
        if participant is None:
            raise ApiError(ErrorCode.NOT_JOINED, "join a consultation first")
        return participant

    def find(self, sid: str) -> Participant | None:
        return self._by_sid.get(sid)

    def all(self) -> list[Participant]:
        return list(self._by_sid.values())

    def by_room(self) -> dict[str, list[Participant]]:
        rooms: dict[str, list[Participant]] = {}
        for participant in self._by_sid.values():
            rooms.setdefault(participant.room_id, []).append(participant)
        return rooms

    def in_room(self, room_id: str) -> list[Participant]:
        return [p for p in self._by_sid.values() if p.room_id == room_id]

    def add(self, participant: Participant) -> None:
        self._by_sid[participant.sid] = participant

    def is_current(self, participant: Participant) -> bool:
        """Still joined on the same connection (not left or replaced meanwhile)."""
        return self._by_sid.get(participant.sid) is participant

    def remove(self, sid: str) -> Participant | None:
        """Forget a connection and every object it owned."""
        participant = self._by_sid.pop(sid, None)
        if participant is not None:
            for transport_id in participant.transports:
                self._transport_owner.pop(transport_id, None)
            for producer_id in participant.producers:
                self._producer_owner.pop(producer_id, None)
            for consumer_id in participant.consumers:
                self._consumer_owner.pop(consumer_id, None)
        return participant

    # ---- media objects ---------------------------------------------------------

    def add_transport(self, participant: Participant, transport_id: str, direction: str) -> None:
        participant.transports[transport_id] = direction
        self._transport_owner[transport_id] = participant.sid

    def add_producer(
        self, participant: Participant, producer_id: str, source: str, kind: str
    ) -> None:
        participant.producers[producer_id] = source
        participant.producer_kinds[producer_id] = kind
        self._producer_owner[producer_id] = participant.sid

    def remove_producer(self, participant: Participant, producer_id: str) -> None:
        participant.producers.pop(producer_id, None)
        self._producer_owner.pop(producer_id, None)

    def remove_transport(self, participant: Participant, transport_id: str) -> None:
        participant.transports.pop(transport_id, None)
        self._transport_owner.pop(transport_id, None)

    def add_consumer(
        self,
        participant: Participant,
        consumer_id: str,
        producer_id: str,
        kind: str,
        transport_id: str,
        *,
        layered: bool = False,
    ) -> None:
        participant.consumers[consumer_id] = producer_id
        if layered:
            participant.layered.add(consumer_id)
        participant.consumer_kinds[consumer_id] = kind
        participant.consumer_transports[consumer_id] = transport_id
        self._consumer_owner[consumer_id] = participant.sid

    def consumer_owner(self, consumer_id: str) -> Participant | None:
        return self._owner(self._consumer_owner.get(consumer_id))

    def producer_owner(self, producer_id: str) -> Participant | None:
        return self._owner(self._producer_owner.get(producer_id))

    def release_consumer(self, consumer_id: str) -> tuple[Participant, str | None] | None:
        """The SFU closed a consumer: its owner and the producer it consumed."""
        participant = self._owner(self._consumer_owner.pop(consumer_id, None))
        if participant is None:
            return None
        participant.consumer_transports.pop(consumer_id, None)
        participant.layered.discard(consumer_id)
        participant.layers.forget(consumer_id)
        return participant, participant.consumers.pop(consumer_id, None)

    def release_producer(self, producer_id: str) -> Participant | None:
        """The SFU closed a producer: its owner, if it still had it."""
        participant = self._owner(self._producer_owner.pop(producer_id, None))
        if participant is None or producer_id not in participant.producers:
            return None
        participant.producers.pop(producer_id, None)
        return participant

    def _owner(self, sid: str | None) -> Participant | None:
        return self._by_sid.get(sid) if sid is not None else None

    def sid_of_transport(self, transport_id: str) -> str | None:
        return self._transport_owner.get(transport_id)
