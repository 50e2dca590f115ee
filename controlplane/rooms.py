"""Room service: the mediasoup flow of a consultation room.

Transport-agnostic: signaling handlers call it with validated payloads and the
caller's identity; it talks to the SFU node through the registry's RPC clients,
keeps live state in Redis (room_state) and pushes events through a ``Notifier``
that the signaling layer implements.  It never imports socketio or aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from controlplane.auth import RoomClaims
from controlplane.media_profiles import profile_for
from controlplane.room_state import (
    ConsumerRecord,
    PeerRecord,
    ProducerRecord,
    RoomRecord,
    RoomState,
)
from controlplane.sfu_client import SfuClient, SfuError, SfuRequestError, SfuTimeout, SfuUnavailable
from controlplane.sfu_registry import SfuRegistry
from schemas.errors import ApiError, ErrorCode

log = structlog.get_logger(__name__)

MAX_TRANSPORTS_PER_PEER = 4


class JoinGate(Protocol):
    """Decides whether a token holder may join its room now (the sessions service)."""

    async def authorize_join(self, claims: RoomClaims) -> str: ...

    async def record_leave(
        self, room_id: str, participant_id: str, role: str, reason: str
    ) -> None: ...

    async def record_refusal(
        self, room_id: str, participant_id: str, role: str, event: str, code: str
    ) -> None: ...


class Notifier(Protocol):
    async def to_peer(self, sid: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_room(
        self, room_id: str, event: str, data: dict[str, Any], skip_sid: str | None = None
    ) -> None: ...

    async def enter_room(self, sid: str, room_id: str) -> None: ...

    async def leave_room(self, sid: str, room_id: str) -> None: ...

    async def disconnect(self, sid: str) -> None: ...


@dataclass
class PeerSession:
    """What this instance knows about a socket that joined a room."""

    sid: str
    claims: RoomClaims
    room_id: str
    node_id: str
    router_id: str
    call_type: str = "consultation"
    joined_at: float = field(default_factory=time.monotonic)
    first_media_seen: bool = False
    transports: dict[str, str] = field(default_factory=dict)  # id -> direction
    producers: dict[str, str] = field(default_factory=dict)  # id -> source
    consumers: dict[str, str] = field(default_factory=dict)  # id -> producer id
    consumer_kinds: dict[str, str] = field(default_factory=dict)  # id -> audio | video
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def peer_id(self) -> str:
        return self.claims.participant_id


def _sfu_api_error(exc: SfuError, action: str) -> ApiError:
    if isinstance(exc, SfuUnavailable | SfuTimeout):
        return ApiError(ErrorCode.SFU_UNAVAILABLE, f"the media server is unavailable ({action})")
    if isinstance(exc, SfuRequestError) and exc.error_type == "NOT_FOUND":
        return ApiError(ErrorCode.NOT_FOUND, f"media object not found ({action})")
    if isinstance(exc, SfuRequestError) and exc.error_type == "UNSUPPORTED":
        return ApiError(ErrorCode.UNSUPPORTED_MEDIA, "the receiver cannot decode this media")
    return ApiError(ErrorCode.WEBRTC_CONNECTION_FAILED, f"the media server refused {action}")


class RoomService:
    def __init__(
        self,
        state: RoomState,
        registry_factory: Callable[[RoomService], SfuRegistry],
        notifier: Notifier,
        *,
        instance_id: str,
        max_peers_per_room: int,
        join_gate: JoinGate | None = None,
        on_first_media: Callable[[str, float], None] | None = None,
    ) -> None:
        self.join_gate = join_gate
        self.on_first_media = on_first_media
        self.state = state
        self.notifier = notifier
        self.instance_id = instance_id
        self.max_peers_per_room = max_peers_per_room
        self.registry = registry_factory(self)
        self._sessions: dict[str, PeerSession] = {}
        self._transport_owner: dict[str, str] = {}  # transport id -> sid
        self._producer_owner: dict[str, str] = {}
        self._consumer_owner: dict[str, str] = {}

    # ---- helpers -------------------------------------------------------------

    def session(self, sid: str) -> PeerSession:
        session = self._sessions.get(sid)
        if session is None:
            raise ApiError(ErrorCode.NOT_JOINED, "join a consultation first")
        return session

    def sessions(self) -> list[PeerSession]:
        return list(self._sessions.values())

    async def _room_and_client(self, session: PeerSession) -> tuple[RoomRecord, SfuClient]:
        room = await self.state.get_room(session.room_id)
        if room is None:
            raise ApiError(ErrorCode.NOT_FOUND, "the consultation room is closed")
        try:
            client = await self.registry.client(room.nodeId)
        except SfuError as exc:
            raise _sfu_api_error(exc, "connect") from exc
        return room, client

    def _own_transport(self, session: PeerSession, transport_id: str) -> str:
        direction = session.transports.get(transport_id)
        if direction is None:
            raise ApiError(ErrorCode.NOT_FOUND, "transport not found")
        return direction

    # ---- join / leave ----------------------------------------------------------

    async def join(self, sid: str, claims: RoomClaims, consultation_id: str) -> dict[str, Any]:
        if consultation_id != claims.consultation_id:
            log.warning("join_refused_other_consultation", participant_id=claims.participant_id)
            raise ApiError(
                ErrorCode.FORBIDDEN, "this token does not grant access to that consultation"
            )
        if sid in self._sessions:
            raise ApiError(ErrorCode.ALREADY_JOINED, "already joined")
        if claims.expires_at <= time.time():
            raise ApiError(ErrorCode.SESSION_EXPIRED, "the room token has expired")
        room_id = claims.consultation_id
        call_type = claims.call_type
        if self.join_gate is not None:
            # An active session naming this participant, or no entry.
            call_type = await self.join_gate.authorize_join(claims)
        profile = profile_for(call_type)
        replaced: PeerRecord | None = None
        async with self.state.room_lock(room_id):
            room = await self._ensure_room(room_id, call_type)
            # Fetched before anything is written, so a failure leaves no trace.
            rtp_capabilities = await self._router_capabilities(room)
            peer_ids = await self.state.peer_ids(room_id)
            if claims.participant_id in peer_ids:
                replaced = await self.state.get_peer(room_id, claims.participant_id)
            elif len(peer_ids) >= self.max_peers_per_room:
                raise ApiError(ErrorCode.ROOM_FULL, "the consultation room is full")
            if replaced is not None:
                await self._evict(room, replaced)
            await self.state.add_peer(
                room_id,
                PeerRecord(
                    peerId=claims.participant_id,
                    role=claims.role,
                    displayName=claims.display_name,
                    sid=sid,
                    instance=self.instance_id,
                    joinedAt=time.time(),
                ),
            )
            session = PeerSession(
                sid=sid,
                claims=claims,
                room_id=room_id,
                node_id=room.nodeId,
                router_id=room.routerId,
                call_type=call_type,
            )
            self._sessions[sid] = session
            peers = [
                p for p in await self.state.peers(room_id) if p.peerId != claims.participant_id
            ]
            producers = [
                p
                for p in await self.state.producers_in_room(room_id)
                if p.peerId != claims.participant_id
            ]
        await self.notifier.enter_room(sid, room_id)
        await self.notifier.to_room(
            room_id,
            "peerJoined",
            {
                "peerId": claims.participant_id,
                "role": claims.role,
                "displayName": claims.display_name,
            },
            skip_sid=sid,
        )
        log.info(
            "peer_joined",
            room_id=room_id,
            peer_id=claims.participant_id,
            role=claims.role,
            replaced=replaced is not None,
        )
        return {
            "roomId": room_id,
            "peerId": claims.participant_id,
            "role": claims.role,
            "displayName": claims.display_name,
            "callType": call_type,
            "mediaProfile": profile.to_client(),
            "routerRtpCapabilities": rtp_capabilities,
            "peers": [
                {"peerId": p.peerId, "role": p.role, "displayName": p.displayName} for p in peers
            ],
            "producers": [_producer_payload(p) for p in producers],
        }

    async def _ensure_room(self, room_id: str, call_type: str) -> RoomRecord:
        """Return the room, creating its router on the least-loaded SFU node if needed.

        Must be called with the room lock held.
        """
        room = await self.state.get_room(room_id)
        if room is not None:
            live = {node.id for node in await self.registry.live_nodes()}
            if room.nodeId in live:
                return room
            # The node that held the room is gone: its router died with it.
            log.warning("room_node_gone", room_id=room_id, node_id=room.nodeId)
            await self._fail_room(room_id, "media_server_failure")
        try:
            node = await self.registry.pick_node()
            client = await self.registry.client(node.id)
            created = await client.request(
                "createRouter", {"profile": call_type, "appData": {"roomId": room_id}}
            )
        except SfuError as exc:
            log.error("room_create_failed", room_id=room_id, error=str(exc))
            raise _sfu_api_error(exc, "create room") from exc
        room = RoomRecord(
            roomId=room_id,
            nodeId=node.id,
            routerId=created["routerId"],
            callType=call_type,
            createdAt=time.time(),
            workerPid=int(created.get("workerPid") or 0),
        )
        await self.state.create_room(room)
        log.info("room_created", room_id=room_id, node_id=node.id, call_type=call_type)
        return room

    async def _router_capabilities(self, room: RoomRecord) -> dict[str, Any]:
        try:
            client = await self.registry.client(room.nodeId)
            result = await client.request("getRouterRtpCapabilities", {"routerId": room.routerId})
        except SfuError as exc:
            raise _sfu_api_error(exc, "get capabilities") from exc
        capabilities: dict[str, Any] = result["rtpCapabilities"]
        return capabilities

    async def router_rtp_capabilities(self, sid: str) -> dict[str, Any]:
        session = self.session(sid)
        room, _ = await self._room_and_client(session)
        return {"routerRtpCapabilities": await self._router_capabilities(room)}

    async def _evict(self, room: RoomRecord, peer: PeerRecord) -> None:
        """Remove an older connection of the same participant (a rejoin from a new socket)."""
        log.info("peer_replaced", room_id=room.roomId, peer_id=peer.peerId)
        await self._close_peer_media(room, room.roomId, peer.peerId)
        await self.state.remove_peer(room.roomId, peer.peerId)
        old = self._sessions.pop(peer.sid, None)
        if old is not None:
            self._forget(old)
        await self.notifier.to_peer(
            peer.sid,
            "evicted",
            {"reason": "joined_elsewhere", "message": "you joined from another connection"},
        )
        await self.notifier.leave_room(peer.sid, room.roomId)
        await self.notifier.disconnect(peer.sid)

    async def _close_peer_media(self, room: RoomRecord, room_id: str, peer_id: str) -> None:
        transports = await self.state.transports(room_id, peer_id)
        if not transports:
            return
        try:
            client = await self.registry.client(room.nodeId)
        except SfuError:
            return  # the node is gone; its transports went with it
        for transport_id in transports:
            try:
                await client.request("closeTransport", {"transportId": transport_id})
            except SfuError as exc:
                log.warning("close_transport_failed", room_id=room_id, error=str(exc))

    async def leave(self, sid: str, reason: str = "left") -> dict[str, Any]:
        session = self._sessions.pop(sid, None)
        if session is None:
            return {"left": False}
        self._forget(session)
        room_id = session.room_id
        peer_id = session.peer_id
        closed_room = False
        producers: list[ProducerRecord] = []
        async with self.state.room_lock(room_id):
            current = await self.state.get_peer(room_id, peer_id)
            room = await self.state.get_room(room_id)
            # Only remove the Redis peer if it is still this socket (not a newer rejoin).
            if current is not None and current.sid == sid and room is not None:
                producers = await self.state.producers_of_peer(room_id, peer_id)
                await self._close_peer_media(room, room_id, peer_id)
                remaining = await self.state.remove_peer(room_id, peer_id)
                if remaining == 0:
                    await self._close_room(room)
                    closed_room = True
        await self.notifier.leave_room(sid, room_id)
        if current is not None and current.sid == sid:
            for producer in producers:
                await self.notifier.to_room(
                    room_id,
                    "producerClosed",
                    {"peerId": peer_id, "producerId": producer.producerId},
                )
            await self.notifier.to_room(room_id, "peerLeft", {"peerId": peer_id, "reason": reason})
        log.info(
            "peer_left", room_id=room_id, peer_id=peer_id, reason=reason, room_closed=closed_room
        )
        if self.join_gate is not None and current is not None and current.sid == sid:
            try:
                await self.join_gate.record_leave(room_id, peer_id, session.claims.role, reason)
            except Exception:
                log.exception("leave_audit_failed", room_id=room_id)
        return {"left": True}

    async def audit_refusal(self, sid: str, claims: RoomClaims, event: str, code: str) -> None:
        """A refused signaling action (someone else's object, another consultation)."""
        if self.join_gate is None:
            return
        session = self._sessions.get(sid)
        room_id = session.room_id if session else claims.consultation_id
        try:
            await self.join_gate.record_refusal(
                room_id, claims.participant_id, claims.role, event, code
            )
        except Exception:
            log.exception("refusal_audit_failed", room_id=room_id)

    async def peer_count(self, room_id: str) -> int:
        return len(await self.state.peer_ids(room_id))

    async def close_room_for_session(self, room_id: str, reason: str) -> None:
        """The session ended: tell everyone why, disconnect them, close the room."""
        await self.notifier.to_room(
            room_id, "sessionEnded", {"reason": reason, "message": "the consultation has ended"}
        )
        async with self.state.room_lock(room_id):
            room = await self.state.get_room(room_id)
            peers = await self.state.peers(room_id)
            for session in [s for s in self._sessions.values() if s.room_id == room_id]:
                self._sessions.pop(session.sid, None)
                self._forget(session)
            if room is not None:
                await self._close_room(room)
        for peer in peers:
            await self.notifier.leave_room(peer.sid, room_id)
            await self.notifier.disconnect(peer.sid)
        log.info("room_closed_for_session", room_id=room_id, reason=reason, peers=len(peers))

    async def _close_room(self, room: RoomRecord) -> None:
        try:
            client = await self.registry.client(room.nodeId)
            await client.request("closeRouter", {"routerId": room.routerId})
        except SfuError as exc:
            log.warning("close_router_failed", room_id=room.roomId, error=str(exc))
        await self.state.delete_room(room.roomId)
        log.info("room_closed", room_id=room.roomId)

    def _forget(self, session: PeerSession) -> None:
        for transport_id in session.transports:
            self._transport_owner.pop(transport_id, None)
        for producer_id in session.producers:
            self._producer_owner.pop(producer_id, None)
        for consumer_id in session.consumers:
            self._consumer_owner.pop(consumer_id, None)

    # ---- transports ------------------------------------------------------------

    async def create_transport(self, sid: str, direction: str, force_tcp: bool) -> dict[str, Any]:
        session = self.session(sid)
        if len(session.transports) >= MAX_TRANSPORTS_PER_PEER:
            raise ApiError(ErrorCode.CONFLICT, "too many transports for this participant")
        room, client = await self._room_and_client(session)
        profile = profile_for(room.callType)
        params: dict[str, Any] = {
            "routerId": room.routerId,
            "enableUdp": not force_tcp,
            "enableTcp": True,
            "appData": {"roomId": room.roomId, "peerId": session.peer_id, "direction": direction},
        }
        if direction == "send":
            params["maxIncomingBitrate"] = profile.max_incoming_bitrate
        try:
            created = await client.request("createWebRtcTransport", params)
        except SfuError as exc:
            raise _sfu_api_error(exc, "create transport") from exc
        transport_id = created["transportId"]
        if self._sessions.get(sid) is not session:
            # The peer left while the transport was being created.
            await self._quiet_close(client, "closeTransport", {"transportId": transport_id})
            raise ApiError(ErrorCode.NOT_JOINED, "left the consultation")
        session.transports[transport_id] = direction
        self._transport_owner[transport_id] = sid
        await self.state.add_transport(room.roomId, session.peer_id, transport_id, direction)
        return {
            "id": transport_id,
            "iceParameters": created["iceParameters"],
            "iceCandidates": created["iceCandidates"],
            "dtlsParameters": created["dtlsParameters"],
            "sctpParameters": created["sctpParameters"],
            "iceServers": [],
        }

    async def connect_transport(
        self, sid: str, transport_id: str, dtls: dict[str, Any]
    ) -> dict[str, Any]:
        session = self.session(sid)
        self._own_transport(session, transport_id)
        _, client = await self._room_and_client(session)
        try:
            await client.request(
                "connectWebRtcTransport", {"transportId": transport_id, "dtlsParameters": dtls}
            )
        except SfuError as exc:
            raise _sfu_api_error(exc, "connect transport") from exc
        return {"connected": True}

    async def restart_ice(self, sid: str, transport_id: str) -> dict[str, Any]:
        session = self.session(sid)
        self._own_transport(session, transport_id)
        _, client = await self._room_and_client(session)
        try:
            result = await client.request("restartIce", {"transportId": transport_id})
        except SfuError as exc:
            raise _sfu_api_error(exc, "restart ICE") from exc
        return {"iceParameters": result["iceParameters"]}

    # ---- producers -------------------------------------------------------------

    async def produce(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.session(sid)
        transport_id = payload["transportId"]
        if self._own_transport(session, transport_id) != "send":
            raise ApiError(ErrorCode.VALIDATION_ERROR, "produce needs a send transport")
        source = payload["appData"]["source"]
        if source in session.producers.values():
            raise ApiError(ErrorCode.CONFLICT, f"already producing {source}")
        room, client = await self._room_and_client(session)
        try:
            result = await client.request(
                "produce",
                {
                    "transportId": transport_id,
                    "kind": payload["kind"],
                    "rtpParameters": payload["rtpParameters"],
                    "paused": payload["paused"],
                    "appData": {"peerId": session.peer_id, "source": source},
                },
            )
        except SfuError as exc:
            raise _sfu_api_error(exc, "produce") from exc
        producer_id = result["producerId"]
        if self._sessions.get(sid) is not session:
            await self._quiet_close(client, "closeProducer", {"producerId": producer_id})
            raise ApiError(ErrorCode.NOT_JOINED, "left the consultation")
        session.producers[producer_id] = source
        self._producer_owner[producer_id] = sid
        record = ProducerRecord(
            producerId=producer_id,
            peerId=session.peer_id,
            kind=payload["kind"],
            source=source,
            paused=payload["paused"],
        )
        await self.state.add_producer(room.roomId, record)
        await self.notifier.to_room(
            room.roomId, "newProducer", _producer_payload(record), skip_sid=sid
        )
        log.info(
            "producer_created",
            room_id=room.roomId,
            peer_id=session.peer_id,
            kind=record.kind,
            source=source,
        )
        return {"id": producer_id}

    def _own_producer(self, session: PeerSession, producer_id: str) -> None:
        if producer_id not in session.producers:
            raise ApiError(ErrorCode.NOT_FOUND, "producer not found")

    async def set_producer_paused(self, sid: str, producer_id: str, paused: bool) -> dict[str, Any]:
        session = self.session(sid)
        self._own_producer(session, producer_id)
        room, client = await self._room_and_client(session)
        try:
            await client.request(
                "pauseProducer" if paused else "resumeProducer", {"producerId": producer_id}
            )
        except SfuError as exc:
            raise _sfu_api_error(exc, "pause producer" if paused else "resume producer") from exc
        await self.state.set_producer_paused(room.roomId, session.peer_id, producer_id, paused)
        event = "producerPaused" if paused else "producerResumed"
        await self.notifier.to_room(
            room.roomId, event, {"peerId": session.peer_id, "producerId": producer_id}, skip_sid=sid
        )
        return {"paused": paused}

    async def close_producer(self, sid: str, producer_id: str) -> dict[str, Any]:
        session = self.session(sid)
        self._own_producer(session, producer_id)
        room, client = await self._room_and_client(session)
        try:
            await client.request("closeProducer", {"producerId": producer_id})
        except SfuError as exc:
            raise _sfu_api_error(exc, "close producer") from exc
        session.producers.pop(producer_id, None)
        self._producer_owner.pop(producer_id, None)
        await self.state.remove_producer(room.roomId, session.peer_id, producer_id)
        await self.notifier.to_room(
            room.roomId,
            "producerClosed",
            {"peerId": session.peer_id, "producerId": producer_id},
            skip_sid=sid,
        )
        return {"closed": True}

    # ---- consumers -------------------------------------------------------------

    async def consume(
        self, sid: str, rtp_capabilities: dict[str, Any], producer_id: str | None
    ) -> dict[str, Any]:
        """Create paused consumers on the peer's receive transport.

        The server decides what a peer receives: every producer of the other
        peers of its room (or the one asked for, if it is one of those).
        """
        session = self.session(sid)
        recv = [tid for tid, direction in session.transports.items() if direction == "recv"]
        if not recv:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "create a receive transport first")
        transport_id = recv[-1]
        room, client = await self._room_and_client(session)
        candidates = [
            p
            for p in await self.state.producers_in_room(room.roomId)
            if p.peerId != session.peer_id
        ]
        if producer_id is not None:
            candidates = [p for p in candidates if p.producerId == producer_id]
            if not candidates:
                raise ApiError(ErrorCode.NOT_FOUND, "producer not found in this consultation")
        already = set(session.consumers.values())
        consumers: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for producer in candidates:
            if producer.producerId in already:
                continue
            try:
                created = await client.request(
                    "consume",
                    {
                        "transportId": transport_id,
                        "producerId": producer.producerId,
                        "rtpCapabilities": rtp_capabilities,
                        "appData": {"peerId": session.peer_id, "source": producer.source},
                    },
                )
            except SfuRequestError as exc:
                if producer_id is not None:
                    raise _sfu_api_error(exc, "consume") from exc
                # The producer closed meanwhile, or this client cannot decode it.
                skipped.append({"producerId": producer.producerId, "reason": exc.error_type})
                continue
            except SfuError as exc:
                raise _sfu_api_error(exc, "consume") from exc
            consumer_id = created["consumerId"]
            session.consumers[consumer_id] = producer.producerId
            session.consumer_kinds[consumer_id] = created["kind"]
            self._consumer_owner[consumer_id] = sid
            await self.state.add_consumer(
                room.roomId,
                ConsumerRecord(
                    consumerId=consumer_id,
                    peerId=session.peer_id,
                    producerId=producer.producerId,
                    kind=created["kind"],
                    paused=True,
                ),
            )
            consumers.append(
                {
                    "id": consumer_id,
                    "producerId": producer.producerId,
                    "peerId": producer.peerId,
                    "kind": created["kind"],
                    "source": producer.source,
                    "rtpParameters": created["rtpParameters"],
                    "type": created["type"],
                    "producerPaused": created["producerPaused"],
                }
            )
        return {"consumers": consumers, "skipped": skipped}

    async def set_consumer_paused(self, sid: str, consumer_id: str, paused: bool) -> dict[str, Any]:
        session = self.session(sid)
        if consumer_id not in session.consumers:
            raise ApiError(ErrorCode.NOT_FOUND, "consumer not found")
        room, client = await self._room_and_client(session)
        try:
            await client.request(
                "pauseConsumer" if paused else "resumeConsumer", {"consumerId": consumer_id}
            )
        except SfuError as exc:
            raise _sfu_api_error(exc, "pause consumer" if paused else "resume consumer") from exc
        await self.state.set_consumer_paused(room.roomId, session.peer_id, consumer_id, paused)
        return {"paused": paused}

    # ---- client stats ------------------------------------------------------------

    async def record_client_stats(self, sid: str, report: dict[str, Any]) -> dict[str, Any]:
        """Keep a participant's latest WebRTC stats report (validated by the schema)."""
        session = self.session(sid)
        own_producers = set(session.producers)
        own_consumers = set(session.consumers)
        for stream in report["streams"]:
            # Stats may only describe the reporter's own producers and consumers.
            producer_id = stream.get("producerId")
            consumer_id = stream.get("consumerId")
            if (producer_id and producer_id not in own_producers) or (
                consumer_id and consumer_id not in own_consumers
            ):
                raise ApiError(ErrorCode.NOT_FOUND, "stats name a stream that is not yours")
        if not session.first_media_seen and any(
            s["direction"] == "inbound" and (s.get("framesDecoded") or s.get("packets"))
            for s in report["streams"]
        ):
            session.first_media_seen = True
            if self.on_first_media is not None:
                self.on_first_media(session.call_type, time.monotonic() - session.joined_at)
        await self.state.set_client_stats(
            session.room_id,
            session.peer_id,
            {**report, "receivedAt": time.time(), "peerId": session.peer_id},
        )
        return {"stored": True}

    # ---- fallback ladder (applied by the quality monitor) ----------------------------

    async def set_video_received(self, session: PeerSession, on: bool, reason: str) -> None:
        """Audio only (video consumers paused at the SFU) or back; both sides are told."""
        room, client = await self._room_and_client(session)
        video = [
            c
            for c, kind in session.consumer_kinds.items()
            if kind == "video" and c in session.consumers
        ]
        for consumer_id in video:
            try:
                await client.request(
                    "resumeConsumer" if on else "pauseConsumer", {"consumerId": consumer_id}
                )
                await self.state.set_consumer_paused(
                    room.roomId, session.peer_id, consumer_id, not on
                )
            except SfuError as exc:
                log.warning("fallback_consumer_failed", room_id=room.roomId, error=str(exc))
        mode = "normal" if on else "audio_only"
        await self.notifier.to_peer(session.sid, "mediaFallback", {"mode": mode, "reason": reason})
        await self.notifier.to_room(
            room.roomId,
            "peerMediaFallback",
            {"peerId": session.peer_id, "mode": mode, "reason": reason},
            skip_sid=session.sid,
        )
        log.info("fallback_video", room_id=room.roomId, peer_id=session.peer_id, mode=mode)

    async def set_send_cap(self, session: PeerSession, reduced: bool, reason: str) -> None:
        """Lower (or restore) what a participant may send, when its uplink loses packets."""
        room, client = await self._room_and_client(session)
        profile = profile_for(session.call_type)
        bitrate = profile.max_incoming_bitrate // 3 if reduced else profile.max_incoming_bitrate
        for transport_id, direction in list(session.transports.items()):
            if direction != "send":
                continue
            try:
                await client.request(
                    "setMaxIncomingBitrate", {"transportId": transport_id, "bitrate": bitrate}
                )
            except SfuError as exc:
                log.warning("fallback_bitrate_failed", room_id=room.roomId, error=str(exc))
        await self.notifier.to_peer(
            session.sid,
            "mediaFallback",
            {
                "mode": "reduced_bitrate" if reduced else "full_bitrate",
                "reason": reason,
                "maxBitrate": bitrate,
            },
        )

    async def advise_relay(self, session: PeerSession, reason: str) -> None:
        await self.notifier.to_peer(session.sid, "iceRelayAdvised", {"reason": reason})

    # ---- SFU notifications -------------------------------------------------------

    async def on_sfu_notification(self, node_id: str, event: str, data: dict[str, Any]) -> None:
        if event == "consumer.closed":
            await self._on_consumer_closed(data)
        elif event in ("transport.icestatechange", "transport.dtlsstatechange"):
            await self._on_transport_state(event, data)
        elif event == "producer.closed":
            await self._on_producer_closed(data)
        elif event == "router.workerclose":
            router_id = str(data.get("routerId"))
            room_ids = {s.room_id for s in self._sessions.values() if s.router_id == router_id}
            room_id = await self.state.room_for_router(router_id)
            if room_id is not None:
                room_ids.add(room_id)
            for affected in sorted(room_ids):
                await self._fail_room(affected, "media_server_failure")
        elif event == "worker.died":
            log.error("sfu_worker_died", node_id=node_id, worker_index=data.get("workerIndex"))
        elif event in ("consumer.producerpause", "consumer.producerresume"):
            sid = self._consumer_owner.get(str(data.get("consumerId")))
            if sid is not None:
                name = "consumerPaused" if event.endswith("pause") else "consumerResumed"
                await self.notifier.to_peer(
                    sid,
                    name,
                    {"consumerId": data.get("consumerId"), "producerId": data.get("producerId")},
                )

    async def _on_consumer_closed(self, data: dict[str, Any]) -> None:
        consumer_id = str(data.get("consumerId"))
        sid = self._consumer_owner.pop(consumer_id, None)
        if sid is None:
            return
        session = self._sessions.get(sid)
        if session is None:
            return
        producer_id = session.consumers.pop(consumer_id, None)
        await self.state.remove_consumer(session.room_id, session.peer_id, consumer_id)
        await self.notifier.to_peer(
            sid, "consumerClosed", {"consumerId": consumer_id, "producerId": producer_id}
        )

    async def _on_producer_closed(self, data: dict[str, Any]) -> None:
        producer_id = str(data.get("producerId"))
        sid = self._producer_owner.pop(producer_id, None)
        session = self._sessions.get(sid) if sid else None
        if session is None or producer_id not in session.producers:
            return
        session.producers.pop(producer_id, None)
        await self.state.remove_producer(session.room_id, session.peer_id, producer_id)
        await self.notifier.to_room(
            session.room_id,
            "producerClosed",
            {"peerId": session.peer_id, "producerId": producer_id},
        )

    async def _on_transport_state(self, event: str, data: dict[str, Any]) -> None:
        transport_id = str(data.get("transportId"))
        sid = self._transport_owner.get(transport_id)
        if sid is None:
            return
        payload = {"transportId": transport_id}
        if "iceState" in data:
            payload["iceState"] = str(data["iceState"])
        if "dtlsState" in data:
            payload["dtlsState"] = str(data["dtlsState"])
        if data.get("dtlsState") == "failed" or data.get("iceState") == "disconnected":
            session = self._sessions.get(sid)
            log.warning(
                "transport_degraded", room_id=session.room_id if session else None, **payload
            )
        await self.notifier.to_peer(sid, "transportStateChanged", payload)

    async def on_node_lost(self, node_id: str) -> None:
        """The RPC connection to an SFU node dropped: its rooms lost their media."""
        room_ids = set(await self.state.rooms_on_node(node_id))
        room_ids.update(s.room_id for s in self._sessions.values() if s.node_id == node_id)
        for room_id in sorted(room_ids):
            await self._fail_room(room_id, "media_server_failure")

    async def _fail_room(self, room_id: str, reason: str) -> None:
        """Tell everyone in a room that its media is gone so clients rejoin; drop its state.

        State goes first, so a client that rejoins as soon as it is told gets a new room.
        """
        log.error("room_failed", room_id=room_id, reason=reason)
        affected = [s for s in self._sessions.values() if s.room_id == room_id]
        for session in affected:
            self._sessions.pop(session.sid, None)
            self._forget(session)
        await self.state.delete_room(room_id)
        for session in affected:
            await self.notifier.to_peer(
                session.sid,
                "roomClosed",
                {
                    "reason": reason,
                    "rejoin": True,
                    "message": "the media server failed; rejoin to continue",
                },
            )
            await self.notifier.leave_room(session.sid, room_id)

    async def _quiet_close(self, client: SfuClient, method: str, params: dict[str, Any]) -> None:
        try:
            await client.request(method, params)
        except SfuError:
            pass

    async def close(self) -> None:
        for sid in list(self._sessions):
            await self.leave(sid, reason="server_shutdown")
        await self.registry.close()


def _producer_payload(record: ProducerRecord) -> dict[str, Any]:
    return {
        "peerId": record.peerId,
        "producerId": record.producerId,
        "kind": record.kind,
        "source": record.source,
        "paused": record.paused,
    }
