"""What a ``MediaPeer`` does with the events the server pushes (docs/signaling.md,
"Server -> client events"): every one is recorded in its events; new producers
are consumed (``auto_consume``), an admission into the call consumes the room,
closed consumers are dropped, and the events that put the peer out of the room
mark it no longer joined (its transports closing then is no media failure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemed_client.peer import MediaPeer

# Admission states of a participant no longer in the room.
OUT_OF_ROOM = ("denied", "removed", "left")


async def on_push(peer: MediaPeer, event: str, data: Any = None) -> None:
    peer.record_event(event, data)
    if event == "newProducer" and peer.auto_consume:
        if peer.recv_transport is not None:
            peer.in_background(consume_quietly(peer, data.get("producerId")))
        else:  # consumed by start_receiving
            peer.announced_early = True
    elif event == "admission":  # let in from the waiting room: receive the room
        peer.join_info["admission"] = data
        if data.get("state") in OUT_OF_ROOM:
            peer.joined = False
        if data.get("state") == "in_call" and peer.auto_consume and peer.recv_transport:
            peer.in_background(consume_quietly(peer, None))
    elif event == "consumerClosed":
        await peer.drop_consumer(str(data.get("consumerId")))
    elif event in ("evicted", "sessionEnded"):
        peer.joined = False


async def consume_quietly(peer: MediaPeer, producer_id: str | None) -> None:
    """Consume in the background: a failure goes to the peer's errors."""
    try:
        await peer.consume(producer_id)
    except Exception as exc:
        peer.errors.append(f"consume {producer_id}: {exc}")
