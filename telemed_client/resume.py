"""Keeping a ``MediaPeer`` in its call when the signaling connection drops or its
media connection fails.

Socket.IO reconnects by itself after a dropped link; when the server drains
(``serverDraining``) the peer reconnects on its own.  Once connected again the
peer sends ``resume`` with the credential of its last join or resume ack: its
transports, producers and consumers were kept by the server, so media never
stopped.  The ack summarises what it missed: consumers that are gone are
dropped, producers it does not consume yet are consumed.  Only when the server
answers ``RESUME_EXPIRED``, or closes the room because its media server failed
(``roomClosed`` with ``rejoin``), does the peer join again from scratch.

A transport whose media connection ends under the peer (aiortc reports it failed
or closed: ICE consent lost, the SFU closed it; or the server reports its DTLS
failed or closed) stops that direction's media for good.  As the browser page
does, the peer then leaves and joins again with new transports, sending and
receiving what it did before, retrying with a growing pause until it is back or
the server refuses it for good (``FATAL_CODES``).  ``mediaFailed`` and
``rejoined`` are recorded in its events; only a rejoin given up goes to
``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from telemed_client.consuming import resume_consumer
from telemed_client.protocol import SignalingError

if TYPE_CHECKING:
    from pymediasoup.transport import Transport

    from telemed_client.peer import MediaPeer

# A rejoin refused with one of these will not succeed by asking again.
FATAL_CODES = frozenset(
    {
        "UNAUTHORIZED",
        "SESSION_EXPIRED",
        "FORBIDDEN",
        "PHYSICIAN_NOT_AUTHORIZED",
        "COMPLIANCE_VIOLATION",
        "VALIDATION_ERROR",
    }
)
# Before acting on a transport that ended: server events that explain it (the
# room or the session closed, the participant was removed or joined elsewhere)
# come over the signaling connection and may arrive just after.
FAILURE_GRACE = 0.3
REJOIN_PAUSE_FIRST, REJOIN_PAUSE_MAX = 0.5, 5.0


class Resumer:
    def __init__(self, peer: MediaPeer) -> None:
        self._peer = peer
        self._connects = 0
        self._drained = False
        self.resumes = 0
        self.rejoins = 0
        self.media_failures = 0
        self._rejoining: asyncio.Task[None] | None = None
        peer.sio.on("connect", self._on_connect)
        peer.sio.on("disconnect", self._on_disconnect)
        peer.sio.on("serverDraining", self._on_draining)
        peer.sio.on("roomClosed", self._on_room_closed)
        peer.sio.on("transportStateChanged", self._on_transport_state)

    def watch(self, transport: Transport) -> None:
        """Rejoin when this transport's media connection ends under the peer."""

        def on_state(state: str) -> None:
            if state in ("failed", "closed"):
                self._media_failed(transport.id, f"connection {state}")

        transport.on("connectionstatechange", on_state)

    async def _on_transport_state(self, data: Any = None) -> None:
        self._peer.record_event("transportStateChanged", data)
        if isinstance(data, dict) and data.get("dtlsState") in ("failed", "closed"):
            self._media_failed(str(data.get("transportId")), f"server: dtls {data['dtlsState']}")

    def _media_failed(self, transport_id: str, reason: str) -> None:
        peer = self._peer
        current = {t.id for t in (peer.send_transport, peer.recv_transport) if t is not None}
        if transport_id not in current - peer.closed_on_request or self._rejoining is not None:
            return  # an old transport, one it closed itself, or a rejoin under way
        if peer.closing or not peer.joined:
            return
        self.media_failures += 1
        peer.record_event("mediaFailed", {"transportId": transport_id, "reason": reason})
        self._start_rejoin(leave_first=True, grace=FAILURE_GRACE)

    def _start_rejoin(self, *, leave_first: bool, grace: float = 0.0) -> None:
        if self._rejoining is None:
            self._rejoining = asyncio.create_task(self._rejoin(leave_first, grace))
            self._rejoining.add_done_callback(self._rejoin_ended)

    def _rejoin_ended(self, _task: asyncio.Task[None]) -> None:
        self._rejoining = None
        # A new transport that failed while the rejoin ran was not acted on then.
        for transport in (self._peer.send_transport, self._peer.recv_transport):
            if transport is not None and transport.connectionState in ("failed", "closed"):
                self._media_failed(transport.id, f"connection {transport.connectionState}")

    async def _on_connect(self) -> None:
        self._connects += 1
        if self._connects > 1 and self._peer.resume_token:
            # Not from inside the client's read loop: the resume ack comes through it.
            self._peer.in_background(self._resume())

    async def _on_draining(self, _data: Any = None) -> None:
        self._drained = True

    async def _on_room_closed(self, data: Any = None) -> None:
        """The room's media server failed: join again at once (a new room is made)."""
        peer = self._peer
        peer.record_event("roomClosed", data)
        peer.joined = False  # the server has removed us already: no leave
        if isinstance(data, dict) and data.get("rejoin") and not peer.closing:
            self._start_rejoin(leave_first=False)

    async def _on_disconnect(self, _reason: Any = None) -> None:
        self._peer.record_event("disconnected", {"reason": str(_reason)})
        if self._drained and not self._peer.closing:
            self._drained = False
            self._peer.in_background(self._reconnect())

    async def _reconnect(self) -> None:
        """The server closed the connection on purpose and asked us back."""
        deadline = time.monotonic() + float(self._peer.join_info.get("resumeWindow", 30))
        while time.monotonic() < deadline and not self._peer.closing:
            try:
                await self._peer.connect()
                return
            except Exception:
                await asyncio.sleep(0.2)
        self._peer.errors.append("could not reconnect after the server drained")

    async def _resume(self) -> None:
        peer = self._peer
        try:
            ack = await peer.request(
                "resume", {"consultationId": peer.room_id, "resumeToken": peer.resume_token}
            )
        except Exception as exc:
            if getattr(exc, "code", None) == "RESUME_EXPIRED":
                self._peer.joined = False
                self._start_rejoin(leave_first=False)
            else:
                peer.errors.append(f"resume: {exc}")
            return
        self.resumes += 1
        peer.resume_token = ack["resumeToken"]
        live = {item["id"] for item in ack["consumers"]}
        for consumer_id in [cid for cid in peer.consumers if cid not in live]:
            await peer.drop_consumer(consumer_id)
        # Resumes lost with the connection (not consumers the server paused itself).
        for item in ack["consumers"]:
            consumer_id = item["id"]
            if consumer_id not in peer.unresumed or consumer_id not in peer.consumers:
                continue
            if not item.get("paused"):
                peer.unresumed.discard(consumer_id)  # the resume had gone through
                continue
            try:
                await resume_consumer(peer, consumer_id)
            except Exception as exc:  # dropped again: the next resume asks again
                peer.errors.append(f"resumeConsumer after resume: {exc}")
        if "admission" in ack:
            peer.join_info["admission"] = ack["admission"]
        waiting = ack.get("admission", {}).get("state") == "waiting"
        if peer.recv_transport is not None and peer.auto_consume and not waiting:
            await peer.consume()
        peer.record_event("resumed", ack)

    async def _rejoin(self, leave_first: bool, grace: float = 0.0) -> None:
        """Join again with new transports, sending and receiving as before."""
        peer = self._peer
        await asyncio.sleep(grace)
        if peer.closing or (leave_first and not peer.joined):
            return  # closed, or put out meanwhile (evicted, removed, session over)
        sending, receiving = peer.sending, peer.receiving
        pause = REJOIN_PAUSE_FIRST
        while not peer.closing:
            try:
                await peer.close_media()
                peer.consumers.clear()
                if not peer.sio.connected:
                    raise ConnectionError("signaling is reconnecting")
                if leave_first:
                    with contextlib.suppress(SignalingError):
                        await peer.request("leave")
                    peer.joined = leave_first = False
                await peer.join(peer.room_id)
                leave_first = True  # in the room again: a retry from here leaves first
                if sending:
                    await peer.start_sending()
                if receiving:
                    await peer.start_receiving()
            except Exception as exc:
                code = getattr(exc, "code", None)
                if code in FATAL_CODES:
                    peer.errors.append(f"rejoin: {exc}")
                    return
                if code == "ALREADY_JOINED":
                    leave_first = True
                peer.record_event("rejoinFailed", {"error": str(exc)})
                await asyncio.sleep(pause)
                pause = min(pause * 2, REJOIN_PAUSE_MAX)
                continue
            self.rejoins += 1
            peer.record_event("rejoined", peer.join_info)
            return
