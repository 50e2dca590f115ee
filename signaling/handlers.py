"""Socket.IO event handlers: the payload is validated by the event's schema (in
the dispatcher), the handler calls one media service, its result is the ack.

Every handler returns its result as the acknowledgement; every failure becomes
``{"error": {"code": ..., "message": ...}}`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from controlplane.auth import RoomClaims
from controlplane.media.services import MediaServices
from schemas import signaling as s


@dataclass
class Context:
    media: MediaServices
    claims: Callable[[str], RoomClaims]


Handler = Callable[[Context, str, dict[str, Any]], Awaitable[dict[str, Any]]]

# event name -> (schema, handler)
EVENTS: dict[str, tuple[type[Schema], Handler]] = {}


def event(name: str, schema: type[Schema]) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        EVENTS[name] = (schema, handler)
        return handler

    return register


@event("join", s.JoinSchema)
async def join(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.ready_receive.join(
        sid, ctx.claims(sid), p["consultationId"], p["receive"]
    )


@event("resume", s.ResumeSchema)
async def resume(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.resumption.resume(
        sid, ctx.claims(sid), p["consultationId"], p["resumeToken"]
    )


@event("getRouterRtpCapabilities", s.EmptySchema)
async def get_router_rtp_capabilities(ctx: Context, sid: str, _p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.ready_receive.router_rtp_capabilities(sid, ctx.claims(sid))


@event("createTransport", s.CreateTransportSchema)
async def create_transport(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.transports.create(sid, p["direction"], p["forceTcp"])


@event("connectTransport", s.ConnectTransportSchema)
async def connect_transport(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.transports.connect(sid, p["transportId"], p["dtlsParameters"])


@event("restartIce", s.TransportIdSchema)
async def restart_ice(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.transports.restart_ice(sid, p["transportId"])


@event("closeTransport", s.TransportIdSchema)
async def close_transport(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.transports.close(sid, p["transportId"])


@event("produce", s.ProduceSchema)
async def produce(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.producers.produce(sid, p)


@event("pauseProducer", s.ProducerIdSchema)
async def pause_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.producers.set_paused(sid, p["producerId"], paused=True)


@event("resumeProducer", s.ProducerIdSchema)
async def resume_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.producers.set_paused(sid, p["producerId"], paused=False)


@event("closeProducer", s.ProducerIdSchema)
async def close_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.producers.close(sid, p["producerId"])


@event("consume", s.ConsumeSchema)
async def consume(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.consumers.consume(sid, p["rtpCapabilities"], p["producerId"])


@event("resumeConsumer", s.ConsumerIdSchema)
async def resume_consumer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.consumers.set_paused(sid, p["consumerId"], paused=False)


@event("pauseConsumer", s.ConsumerIdSchema)
async def pause_consumer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.consumers.set_paused(sid, p["consumerId"], paused=True)


@event("leave", s.EmptySchema)
async def leave(ctx: Context, sid: str, _p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.membership.leave(sid, reason="left")


@event("admitParticipant", s.PeerIdSchema)
async def admit_participant(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.waiting_room.decide(sid, p["peerId"], "admit")


@event("denyParticipant", s.PeerIdSchema)
async def deny_participant(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.waiting_room.decide(sid, p["peerId"], "deny")


@event("removeParticipant", s.RemoveParticipantSchema)
async def remove_participant(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    decision = "toWaiting" if p["to"] == "waiting" else "remove"
    return await ctx.media.waiting_room.decide(sid, p["peerId"], decision)


@event("reportStats", s.StatsReportSchema)
async def report_stats(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.client_stats.record(sid, p)


@event("reportTileSizes", s.TileSizesSchema)
async def report_tile_sizes(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.media.layers.report_tiles(sid, p["tiles"])
