"""``MediaPeer``: a participant of a consultation room in a Python process.

Signaling is a python-socketio client speaking the documented protocol
(docs/signaling.md); media is pymediasoup (a mediasoup-client port) on aiortc.
It sends synthetic audio/video, consumes what the server offers, and records
what it actually decoded (frames, sizes, audio level) per consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc.mediastreams import MediaStreamTrack
from pymediasoup import Device
from pymediasoup.consumer import Consumer
from pymediasoup.producer import Producer
from pymediasoup.rtp_parameters import RtpParameters
from pymediasoup.transport import Transport

from telemed_client.consuming import attach_consumers, close_consumer, consume
from telemed_client.devices import loaded_device, local_tracks
from telemed_client.events import EventLog, PeerEvent
from telemed_client.ice_policy import IceControls, IcePolicy
from telemed_client.jitter import use_frame_end_jitter_buffer
from telemed_client.media import PatternVideoTrack
from telemed_client.protocol import SignalingError, connect_with_dtls, transport_options
from telemed_client.pushes import on_push
from telemed_client.receiving import ReceivedTrack, tracks_from, wait_for_frames
from telemed_client.resume import Resumer


@dataclass
class MediaPeer(IceControls):
    """One participant: ``connect()`` with its room token, ``join(room_id)``, then
    ``start_sending()`` and/or ``start_receiving()``.  New producers of others are
    consumed as they appear (``auto_consume``); ``received`` holds what was
    decoded per consumer, ``events`` every server push, ``timings`` each
    signaling step.  ``leave()`` then ``close()``.

    With ``auto_resume`` (the default) a dropped signaling connection is
    reconnected and the call resumed with its media untouched (see
    telemed_client.resume); local events ``disconnected``, ``resumed`` and
    ``rejoined`` are recorded in ``events`` too."""

    url: str
    token: str
    send_audio: bool = True
    # "synthetic": a tone and a moving pattern; "silent": producers without frames.
    media: str = "synthetic"
    send_video: bool = True
    video_size: tuple[int, int] = (320, 240)
    auto_consume: bool = True
    auto_resume: bool = True
    request_timeout: float = 10.0
    # "relay": media only through the TURN servers the server offers (never direct).
    ice_transport_policy: IcePolicy = "all"
    sio: socketio.AsyncClient = field(init=False)
    device: Device | None = field(init=False, default=None)
    send_transport: Transport | None = field(init=False, default=None)
    recv_transport: Transport | None = field(init=False, default=None)
    producers: dict[str, Producer] = field(init=False, default_factory=dict)  # source -> producer
    consumers: dict[str, Consumer] = field(init=False, default_factory=dict)
    received: dict[str, ReceivedTrack] = field(init=False, default_factory=dict)
    # Consumers whose resumeConsumer got no answer (the connection dropped): the
    # resume asks again for those the server still holds paused.
    unresumed: set[str] = field(init=False, default_factory=set)
    event_log: EventLog = field(init=False, default_factory=EventLog)
    errors: list[str] = field(init=False, default_factory=list)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    join_info: dict[str, Any] = field(init=False, default_factory=dict)
    connect_error: Any = field(init=False, default=None)
    join_started_at: float | None = field(init=False, default=None)
    room_id: str = field(init=False, default="")
    resume_token: str = field(init=False, default="")
    resumer: Resumer | None = field(init=False, default=None)
    closing: bool = field(init=False, default=False)
    # In the room as far as the server is concerned (joined, not left or put out).
    joined: bool = field(init=False, default=False)
    # Transports this peer asked the server to close (their end is no failure).
    closed_on_request: set[str] = field(init=False, default_factory=set)
    sending: bool = field(init=False, default=False)
    receiving: bool = field(init=False, default=False)
    _tracks: list[MediaStreamTrack] = field(init=False, default_factory=list)
    # The capabilities the device was loaded from, and what the join made to receive.
    _loaded_from: dict[str, Any] | None = field(init=False, default=None)
    _ready: dict[str, Any] | None = field(init=False, default=None)
    _preloaded: bool = field(init=False, default=False)  # by load_device, for the next join
    announced_early: bool = field(init=False, default=False)  # newProducer before receiving
    readers: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    consume_lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        use_frame_end_jitter_buffer()  # a video frame is decoded once it is all in
        self.sio = socketio.AsyncClient(
            reconnection=self.auto_resume,
            reconnection_delay=0.1,
            reconnection_delay_max=1.0,
            randomization_factor=0.2,
        )
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("*", self._on_any)
        if self.auto_resume:
            self.resumer = Resumer(self)

    # ---- signaling -----------------------------------------------------------

    async def connect(self) -> None:
        started = time.perf_counter()
        await self.sio.connect(
            self.url,
            auth={"token": self.token},
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=10,
        )
        self.timings["connect"] = time.perf_counter() - started

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    @property
    def events(self) -> list[PeerEvent]:
        return self.event_log.events

    def record_event(self, event: str, data: Any = None) -> None:
        self.event_log.record(event, data)

    async def _on_any(self, event: str, data: Any = None) -> None:
        await on_push(self, event, data)

    async def drop_consumer(self, consumer_id: str) -> None:
        track = self.received.get(consumer_id)
        if track is not None:
            track.ended = True
        self.unresumed.discard(consumer_id)
        self.in_background(close_consumer(self, consumer_id))

    def in_background(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_for_event(
        self, name: str, predicate: Callable[[Any], bool] = lambda _d: True, timeout: float = 10.0
    ) -> Any:
        return await self.event_log.wait_for(name, predicate, timeout)

    async def request(self, event: str, payload: Any = None) -> dict[str, Any]:
        """Send an event, wait for its ack; an error ack raises SignalingError."""
        started = time.perf_counter()
        if event == "closeTransport" and isinstance(payload, dict):
            self.closed_on_request.add(str(payload.get("transportId")))
        ack = await self.sio.call(
            event, payload if payload is not None else {}, timeout=self.request_timeout
        )
        self.timings[event] = self.timings.get(event, 0.0) + time.perf_counter() - started
        if isinstance(ack, dict) and "error" in ack:
            error = ack["error"]
            raise SignalingError(event, error.get("code", "?"), error.get("message", ""))
        if not isinstance(ack, dict):
            raise SignalingError(event, "BAD_ACK", "acknowledgement is not an object")
        return ack

    # ---- media -----------------------------------------------------------------

    async def _load(self, capabilities: dict[str, Any]) -> None:
        for track in self._tracks:
            track.stop()
        self._tracks = local_tracks(self.send_audio, self.send_video, self.media, self.video_size)
        self.device, self.timings["deviceLoad"] = await loaded_device(self._tracks, capabilities)
        self._loaded_from = capabilities

    async def load_device(self) -> bool:
        """Before ``join``: load the device with the room's capabilities, so the join
        can ask for a ready receive transport and consumers (``join(receive=True)``).
        False if the room is not open yet (the join will load it)."""
        try:
            ack = await self.request("getRouterRtpCapabilities")
        except SignalingError as exc:
            if exc.code != "NOT_JOINED":
                raise
            return False
        await self._load(ack["routerRtpCapabilities"])
        self._preloaded = True
        return True

    async def join(self, consultation_id: str, receive: bool = False) -> dict[str, Any]:
        """Join; with ``receive`` and a device loaded beforehand (``load_device``) the
        ack brings a receive transport and consumers, used by ``start_receiving``."""
        self.join_started_at = time.monotonic()
        preloaded, self._preloaded = self._preloaded, False
        payload: dict[str, Any] = {"consultationId": consultation_id}
        if receive and preloaded and self.device is not None:
            payload["receive"] = {
                "rtpCapabilities": self.device.rtpCapabilities.model_dump(exclude_none=True)
            }
        self.join_info = await self.request("join", payload)
        self.joined = True
        self.room_id = consultation_id
        self.resume_token = str(self.join_info.get("resumeToken", ""))
        self._ready = self.join_info.get("receive")
        capabilities = self.join_info["routerRtpCapabilities"]
        if not preloaded or capabilities != self._loaded_from:
            # Not loaded yet, or loaded from another router (the room was made
            # again meanwhile): what the join made for that device is not used.
            if self._ready is not None and "transport" in self._ready:
                self.in_background(self._close_unused(self._ready["transport"]["id"]))
            self._ready = None
            await self._load(capabilities)
        return self.join_info

    async def _close_unused(self, transport_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.request("closeTransport", {"transportId": transport_id})

    def _loaded_device(self) -> Device:
        if self.device is None:
            raise RuntimeError("join the consultation first")
        return self.device

    async def start_sending(self) -> None:
        self.sending = True
        device = self._loaded_device()
        info = await self.request("createTransport", {"direction": "send"})
        transport = device.createSendTransport(**transport_options(info, self.ice_transport_policy))
        self.send_transport = transport
        connect_with_dtls(transport, self.request, self.errors)
        if self.resumer is not None:
            self.resumer.watch(transport)

        async def on_produce(kind: str, rtp: RtpParameters, app_data: dict[str, Any]) -> str:
            ack = await self.request(
                "produce",
                {
                    "transportId": transport.id,
                    "kind": kind,
                    "rtpParameters": rtp.model_dump(exclude_none=True),
                    "appData": {"source": app_data["source"]},
                },
            )
            return str(ack["id"])

        transport.on("produce", on_produce)
        for track in self._tracks:
            source = "mic" if track.kind == "audio" else "camera"
            started = time.perf_counter()
            producer = await transport.produce(
                track=track, stopTracks=False, appData={"source": source}
            )
            self.timings[f"produce.{track.kind}"] = time.perf_counter() - started
            self.producers[source] = producer

    async def start_receiving(self) -> list[ReceivedTrack]:
        self.receiving = True
        device = self._loaded_device()
        ready, self._ready = self._ready or {}, None  # what join(receive=True) made
        info = ready.get("transport") or await self.request(
            "createTransport", {"direction": "recv"}
        )
        transport = device.createRecvTransport(**transport_options(info, self.ice_transport_policy))
        self.recv_transport = transport  # newProducer is consumed from now on
        announced_early, self.announced_early = self.announced_early, False
        connect_with_dtls(transport, self.request, self.errors)
        if self.resumer is not None:
            self.resumer.watch(transport)
        if self.join_info.get("admission", {}).get("state") == "waiting":
            return []  # nothing to receive until a clinician lets us in
        if "transport" in ready and "error" not in ready:
            async with self.consume_lock:
                tracks = await attach_consumers(self, transport, ready["consumers"])
            if announced_early:  # producers that came after the join's consumers
                tracks += await self.consume()
            return tracks
        return await self.consume()

    async def consume(self, producer_id: str | None = None) -> list[ReceivedTrack]:
        """Ask the server for consumers, attach them locally, then resume them."""
        if self.recv_transport is None:
            raise RuntimeError("start receiving first")
        async with self.consume_lock:
            return await consume(self, self.recv_transport, self._loaded_device(), producer_id)

    def tracks_from(self, peer_id: str, kind: str | None = None) -> list[ReceivedTrack]:
        return tracks_from(self.received.values(), peer_id, kind)

    async def wait_for_frames(
        self, peer_id: str, kind: str, count: int = 10, timeout: float = 15.0
    ) -> ReceivedTrack:
        """A track from ``peer_id`` with at least ``count`` decoded frames."""
        return await wait_for_frames(self.received, peer_id, kind, count, timeout, self.errors)

    async def leave(self) -> None:
        self.joined = False  # the server closes our transports: that is no failure
        if self.sio.connected:
            await self.request("leave")

    async def close_media(self) -> None:
        for task in self.readers:
            task.cancel()
        for task in self.readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.readers.clear()
        for transport in (self.send_transport, self.recv_transport):
            if transport is not None and not transport.closed:
                with contextlib.suppress(Exception):
                    await transport.close()
        self.send_transport = self.recv_transport = None
        for track in self._tracks:
            track.stop()

    async def close(self) -> None:
        """Leave (if still in the call), stop media, disconnect."""
        self.closing = True
        if self.sio.connected and self.room_id:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.call("leave", {}), 2.0)
        await self.close_media()
        with contextlib.suppress(Exception):
            await self.sio.shutdown()


async def share_screen(peer: MediaPeer, track: MediaStreamTrack | None = None) -> str:
    """Send a second video from ``peer``, source ``screen`` (by default a 640x480
    pattern at 15 fps), on its send transport; the producer id."""
    if peer.send_transport is None:
        raise RuntimeError("start sending first")
    screen = track or PatternVideoTrack(640, 480, fps=15)
    producer = await peer.send_transport.produce(
        track=screen, stopTracks=False, appData={"source": "screen"}
    )
    peer.producers["screen"] = producer
    return str(producer.id)
