"""Keeping a ``MediaPeer`` in its call when the signaling connection drops.

Socket.IO reconnects by itself after a dropped link; when the server drains
(``serverDraining``) the peer reconnects on its own.  Once connected again the
peer sends ``resume`` with the credential of its last join or resume ack: its
transports, producers and consumers were kept by the server, so media never
stopped.  The ack summarises what it missed: consumers that are gone are
dropped, producers it does not consume yet are consumed.  Only when the server
answers ``RESUME_EXPIRED``, or closes the room because its media server failed
(``roomClosed`` with ``rejoin``), does the peer join again from scratch.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from telemed_client.consuming import resume_consumer

if TYPE_CHECKING:
    from telemed_client.peer import MediaPeer


class Resumer:
    def __init__(self, peer: MediaPeer) -> None:
        self._peer = peer
        self._connects = 0
        self._drained = False
        self.resumes = 0
        self.rejoins = 0
        peer.sio.on("connect", self._on_connect)
        peer.sio.on("disconnect", self._on_disconnect)
        peer.sio.on("serverDraining", self._on_draining)
        peer.sio.on("roomClosed", self._on_room_closed)

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
        if isinstance(data, dict) and data.get("rejoin") and not peer.closing:
            peer.in_background(self._rejoin())

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
                await self._rejoin()
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

    async def _rejoin(self) -> None:
        peer = self._peer
        if peer.closing:
            return
        try:
            # New transports, and the same sending and receiving as before.
            sending, receiving = peer.sending, peer.receiving
            await peer.close_media()
            peer.consumers.clear()
            await peer.join(peer.room_id)
            if sending:
                await peer.start_sending()
            if receiving:
                await peer.start_receiving()
        except Exception as exc:
            peer.errors.append(f"rejoin: {exc}")
            return
        self.rejoins += 1
        peer.record_event("rejoined", peer.join_info)
