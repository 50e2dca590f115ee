"""The media services of one control-plane instance, built together: they share
the instance's participant registry, the room state and the SFU registry."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from controlplane.media.admission import AdmissionStore
from controlplane.media.client_stats import ClientStats, FirstMediaObserver
from controlplane.media.consumers import Consumers
from controlplane.media.fallback_actions import MediaFallback
from controlplane.media.ice_servers import IceServers
from controlplane.media.layer_control import LayerControl
from controlplane.media.live_erasure import LiveStateEraser
from controlplane.media.membership import Membership
from controlplane.media.participants import LocalParticipants
from controlplane.media.ports import JoinGate, Notifier
from controlplane.media.presence import Presence
from controlplane.media.presence_keeper import PresenceKeeper
from controlplane.media.producers import Producers
from controlplane.media.ready_receive import ReadyReceive
from controlplane.media.reassertion import Reassertion
from controlplane.media.recording_capture import RoomCapture
from controlplane.media.resumption import Resumption
from controlplane.media.room_failures import RoomFailures
from controlplane.media.room_placement import RoomPlacement
from controlplane.media.room_state import RoomState
from controlplane.media.routers import RoomRouters
from controlplane.media.sfu_events import SfuEvents
from controlplane.media.transports import Transports
from controlplane.media.waiting_room import WaitingRoom
from controlplane.placement.node_trust import NodeTls
from controlplane.placement.registry import SfuRegistry


@dataclass(frozen=True)
class MediaServices:
    participants: LocalParticipants
    state: RoomState
    registry: SfuRegistry
    membership: Membership
    resumption: Resumption
    presence: PresenceKeeper
    transports: Transports
    producers: Producers
    consumers: Consumers
    ready_receive: ReadyReceive
    client_stats: ClientStats
    fallback: MediaFallback
    events: SfuEvents
    capture: RoomCapture
    waiting_room: WaitingRoom
    layers: LayerControl
    erasure: LiveStateEraser

    @classmethod
    def build(
        cls,
        redis: aioredis.Redis,
        notifier: Notifier,
        join_gate: JoinGate,
        *,
        sfu_secret: str,
        sfu_rpc_timeout: float,
        sfu_tls: NodeTls | None = None,
        instance_id: str,
        max_peers_per_room: int,
        resume_window: float,
        ice_servers: IceServers | None = None,
        on_first_media: FirstMediaObserver | None = None,
        patients_wait: frozenset[str] = frozenset(),
        erased_name_ttl: int = 14400,
    ) -> MediaServices:
        participants = LocalParticipants()
        ice = ice_servers or IceServers(None)
        state = RoomState(redis)
        registry = SfuRegistry(redis, sfu_secret, timeout=sfu_rpc_timeout, tls=sfu_tls)
        placement = RoomPlacement(state, registry)
        failures = RoomFailures(participants, state, notifier, placement)
        events = SfuEvents(participants, state, notifier, failures)
        registry.listen(events)
        routers = RoomRouters(state, registry, failures, placement)
        presence = Presence(redis, instance_id, resume_window)
        waiting_room = WaitingRoom(
            AdmissionStore(redis), state, participants, routers, notifier, patients_wait, join_gate
        )
        membership = Membership(
            participants,
            state,
            routers,
            notifier,
            join_gate,
            presence,
            waiting_room,
            instance_id=instance_id,
            max_peers_per_room=max_peers_per_room,
        )
        waiting_room.put_out = membership.remove
        membership.departure_listeners.append(waiting_room.departed)
        resumption = Resumption(participants, state, presence, notifier, ice, waiting_room)
        producers = Producers(participants, routers, state, notifier)
        waiting_room.producer_listeners = producers.listeners
        transports = Transports(participants, routers, state, ice)
        consumers = Consumers(participants, routers, state)
        layers = LayerControl(participants, routers, state, notifier)
        events.layers_changed.append(layers.layers_changed)
        events.speaker_changed.append(layers.speaker)
        membership.departure_listeners.append(layers.departed)
        return cls(
            participants=participants,
            state=state,
            registry=registry,
            membership=membership,
            resumption=resumption,
            presence=PresenceKeeper(
                presence,
                resumption,
                membership,
                participants,
                state,
                Reassertion(redis, participants, state, presence),
            ),
            transports=transports,
            producers=producers,
            consumers=consumers,
            ready_receive=ReadyReceive(
                membership, participants, transports, consumers, state, routers
            ),
            waiting_room=waiting_room,
            client_stats=ClientStats(participants, state, on_first_media),
            fallback=MediaFallback(routers, state, notifier, ice),
            events=events,
            capture=RoomCapture(state, registry, notifier),
            layers=layers,
            erasure=LiveStateEraser(redis, erased_name_ttl),
        )

    async def close(self) -> None:
        """Stop talking to the SFU nodes; participants keep their media (see drain)."""
        await self.layers.close()
        await self.registry.close()
