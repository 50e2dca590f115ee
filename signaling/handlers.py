"""Socket.IO event handlers: validate the payload, call the room service, ack.

Every handler returns its result as the acknowledgement; every failure becomes
``{"error": {"code": ..., "message": ...}}`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from controlplane.auth import RoomClaims
from controlplane.rooms import RoomService
from schemas import signaling as s


@dataclass
class Context:
    rooms: RoomService
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
    return await ctx.rooms.join(sid, ctx.claims(sid), p["consultationId"])


@event("getRouterRtpCapabilities", s.EmptySchema)
async def get_router_rtp_capabilities(ctx: Context, sid: str, _p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.router_rtp_capabilities(sid)


@event("createTransport", s.CreateTransportSchema)
async def create_transport(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.create_transport(sid, p["direction"], p["forceTcp"])


@event("connectTransport", s.ConnectTransportSchema)
async def connect_transport(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.connect_transport(sid, p["transportId"], p["dtlsParameters"])


@event("restartIce", s.TransportIdSchema)
async def restart_ice(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.restart_ice(sid, p["transportId"])


@event("produce", s.ProduceSchema)
async def produce(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.produce(sid, p)


@event("pauseProducer", s.ProducerIdSchema)
async def pause_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.set_producer_paused(sid, p["producerId"], paused=True)


@event("resumeProducer", s.ProducerIdSchema)
async def resume_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.set_producer_paused(sid, p["producerId"], paused=False)


@event("closeProducer", s.ProducerIdSchema)
async def close_producer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.close_producer(sid, p["producerId"])


@event("consume", s.ConsumeSchema)
async def consume(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.consume(sid, p["rtpCapabilities"], p["producerId"])


@event("resumeConsumer", s.ConsumerIdSchema)
async def resume_consumer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.set_consumer_paused(sid, p["consumerId"], paused=False)


@event("pauseConsumer", s.ConsumerIdSchema)
async def pause_consumer(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.set_consumer_paused(sid, p["consumerId"], paused=True)


@event("leave", s.EmptySchema)
async def leave(ctx: Context, sid: str, _p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.leave(sid, reason="left")


@event("reportStats", s.StatsReportSchema)
async def report_stats(ctx: Context, sid: str, p: dict[str, Any]) -> dict[str, Any]:
    return await ctx.rooms.record_client_stats(sid, p)
