"""Consumers of a ``MediaPeer``: asking for them (``consume``), attaching those
the server made (the answer to ``consume``, or the join's ``receive``) to the
receive transport, and resuming them at the SFU."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pymediasoup import Device
from pymediasoup.rtp_parameters import RtpParameters
from pymediasoup.transport import Transport

from telemed_client.protocol import SignalingError
from telemed_client.receiving import ReceivedTrack, read_frames

if TYPE_CHECKING:
    from telemed_client.peer import MediaPeer


async def consume(
    peer: MediaPeer, transport: Transport, device: Device, producer_id: str | None
) -> list[ReceivedTrack]:
    """``consume`` (one producer, or all those not yet consumed), then attach and
    resume what the server made (the caller holds ``peer.consume_lock``)."""
    payload: dict[str, Any] = {
        "rtpCapabilities": device.rtpCapabilities.model_dump(exclude_none=True)
    }
    if producer_id is not None:
        if any(t.producer_id == producer_id for t in peer.received.values()):
            return []
        payload["producerId"] = producer_id
    ack = await peer.request("consume", payload)
    return await attach_consumers(peer, transport, ack["consumers"])


async def attach_consumers(
    peer: MediaPeer, transport: Transport, items: list[dict[str, Any]]
) -> list[ReceivedTrack]:
    """Attach each consumer locally and resume it as soon as it is attached, while
    the next is attached (pymediasoup attaches one at a time); the tracks of those
    resumed (one whose producer closed meanwhile is left out)."""
    tracks: list[ReceivedTrack] = []
    resumes: list[asyncio.Task[bool]] = []
    try:
        for item in items:
            consumer = await transport.consume(
                id=item["id"],
                producerId=item["producerId"],
                kind=item["kind"],
                rtpParameters=RtpParameters(**item["rtpParameters"]),
            )
            peer.consumers[item["id"]] = consumer
            track = ReceivedTrack.of_consumer(item)
            peer.received[item["id"]] = track
            peer.readers.append(asyncio.create_task(read_frames(consumer.track, track)))
            tracks.append(track)
            resumes.append(asyncio.create_task(resume_consumer(peer, item["id"])))
    finally:
        resumed = await asyncio.gather(*resumes, return_exceptions=True)
    for outcome in resumed:
        if isinstance(outcome, BaseException):
            raise outcome
    return [track for track, ok in zip(tracks, resumed, strict=True) if ok is True]


async def resume_consumer(peer: MediaPeer, consumer_id: str) -> bool:
    """Resume a consumer at the SFU; False if it is gone (its producer closed).
    Until answered it is in ``peer.unresumed``: a resume after a dropped
    connection asks again for it (telemed_client.resume)."""
    peer.unresumed.add(consumer_id)
    try:
        await peer.request("resumeConsumer", {"consumerId": consumer_id})
    except SignalingError as exc:
        if exc.code != "NOT_FOUND":
            raise
        peer.unresumed.discard(consumer_id)
        track = peer.received.get(consumer_id)
        if track is not None:
            track.ended = True  # its producer closed meanwhile (consumerClosed)
        return False
    peer.unresumed.discard(consumer_id)
    return True


async def close_consumer(peer: MediaPeer, consumer_id: str) -> None:
    """Forget a consumer the server closed, without an SDP renegotiation.

    pymediasoup's close() marks the m-section closed and the next consume
    recycles that section for a new mid, which aiortc does not support
    ("Media sections in answer do not match offer").  The server has
    already stopped the stream, so the local section is left inactive.
    """
    async with peer.consume_lock:
        consumer = peer.consumers.pop(str(consumer_id), None)
        if consumer is not None:
            consumer.track.stop()
