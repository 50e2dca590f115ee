"""Load generation against any deployment (`telemed loadtest`; the benchmarks use it).

Consultations of M participants each join, WAVE participants at a time (the first
of a room, its clinician, before the others; a participant the call type puts in
the waiting room is admitted by it), stay for a duration, leave.  What is real:
Socket.IO signaling, and in media mode WebRTC through the deployment's SFU, every
participant a MediaPeer (aiortc) encoding its own tone (Opus) and moving pattern
(VP8, 320x240) and decoding everyone else's (joining a call in progress ready to
receive, as MediaPeer does: docs/signaling.md); so a media run costs the generating
machine real CPU (the report gives its share of a core: near 100%, the generator
is the limit, not the deployment).  In signaling mode a participant is a bare Socket.IO client.
Every participant sends one cheap event (``getRouterRtpCapabilities``) a second.

Reported: join ack (p50/p95/p99/max), join -> first video frame from each other
member (media), cheap-event round trips, tracks receiving at the end against
those expected, frames decoded, receiver packet loss and the round-trip time the
SFU's RTCP reports give the senders (media), and every error by code.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import socketio

from telemed_client.peer import MediaPeer
from telemed_client.protocol import SignalingError


@dataclass(frozen=True)
class Seat:
    """One participant of a load-test room, with its room token."""

    room: str
    participant: str
    role: str
    token: str
    url: str = ""  # the control plane to use, when not the run's


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, SignalingError):
        return exc.code
    return type(exc).__name__


@dataclass
class Report:
    rooms: int
    participants: int
    mode: str
    seconds: float
    joins: list[float] = field(default_factory=list)
    first_frames: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    burst: list[float] = field(default_factory=list)
    burst_wall: float = 0.0
    generator_cpu: float = 0.0  # this process's CPU while in the call, in cores
    errors: Counter[str] = field(default_factory=Counter)
    tracks_expected: int = 0
    tracks_receiving: int = 0
    frames: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    rtts: list[float] = field(default_factory=list)
    # Media connections that ended under a participant, and the rejoins they made.
    media_failures: int = 0
    rejoins: int = 0

    @staticmethod
    def _summary(values: list[float]) -> dict[str, float | int]:
        ms = [v * 1000 for v in values]
        return {
            "n": len(ms),
            "p50": round(percentile(ms, 0.5), 1),
            "p95": round(percentile(ms, 0.95), 1),
            "p99": round(percentile(ms, 0.99), 1),
            "max": round(max(ms, default=0.0), 1),
        }

    @property
    def loss(self) -> float:
        expected = self.packets_received + self.packets_lost
        return self.packets_lost / expected if expected else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rooms": self.rooms,
            "participants": self.participants,
            "mode": self.mode,
            "seconds": self.seconds,
            "joinMs": self._summary(self.joins),
            "firstVideoFrameMs": self._summary(self.first_frames),
            "cheapEventMs": self._summary(self.events),
            "burstMs": {**self._summary(self.burst), "wall": round(self.burst_wall * 1000, 1)},
            "tracks": {"expected": self.tracks_expected, "receiving": self.tracks_receiving},
            "framesDecoded": self.frames,
            "packets": {"received": self.packets_received, "lost": self.packets_lost},
            "loss": round(self.loss, 5),
            "rttMs": self._summary(self.rtts),
            "mediaFailures": self.media_failures,
            "rejoins": self.rejoins,
            "generatorCores": round(self.generator_cpu, 3),
            "errors": dict(self.errors),
        }

    def lines(self) -> list[str]:
        out = [
            f"{self.rooms} consultations x {self.participants} participants, "
            f"{self.mode}, {self.seconds:.0f} s",
            f"{'(ms)':<30}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}",
        ]
        rows = [("join ack", self.joins), ("cheap event round trip", self.events)]
        if self.mode == "media":
            rows.insert(1, ("join -> first video frame", self.first_frames))
            rows.append(("RTT (SFU receiver reports)", self.rtts))
        if self.burst:
            rows.append((f"burst of {len(self.burst)} at once", self.burst))
        for name, values in rows:
            s = self._summary(values)
            out.append(f"{name:<30}{s['n']:>7}{s['p50']:>9}{s['p95']:>9}{s['p99']:>9}{s['max']:>9}")
        if self.burst:
            out.append(f"the whole burst answered in {self.burst_wall * 1000:.0f} ms")
        if self.mode == "media":
            out.append(
                f"tracks receiving at the end: {self.tracks_receiving} of {self.tracks_expected}; "
                f"frames decoded {self.frames}; receiver loss {self.loss:.2%} "
                f"({self.packets_lost} of {self.packets_received + self.packets_lost} packets)"
            )
            out.append(
                f"media connections ended under a participant: {self.media_failures}; "
                f"rejoins: {self.rejoins}"
            )
        out.append(
            f"load generator (this process) while in the call: {self.generator_cpu:.0%} of a core"
            " (near 100%: the generator, not the deployment, is the limit)"
        )
        out.append(f"errors: {dict(self.errors) or 'none'}")
        return out


class _Participant:
    """A seat's connection: a MediaPeer (media) or a bare Socket.IO client."""

    def __init__(self, url: str, seat: Seat, media: bool, report: Report) -> None:
        self.seat = seat
        self.report = report
        self.url = seat.url or url
        self.peer = MediaPeer(self.url, seat.token) if media else None
        self.sio = self.peer.sio if self.peer else socketio.AsyncClient(reconnection=False)
        self.joined = False

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.peer is not None:
            return await self.peer.request(event, data)
        ack = await self.sio.call(event, data, timeout=10)
        if isinstance(ack, dict) and "error" in ack:
            raise SignalingError(event, ack["error"].get("code", "?"), "")
        if not isinstance(ack, dict):
            raise SignalingError(event, "BAD_ACK", "")
        return ack

    async def arrive(self) -> dict[str, Any] | None:
        """Connect and join; the join ack, or None (counted as an error)."""
        try:
            if self.peer is not None:
                await self.peer.connect()
                # As the Python client joins a call in progress: the device loaded from
                # the room's capabilities first, the receive side made by the join.
                await self.peer.load_device()
                ack = await self.peer.join(self.seat.room, receive=True)
                self.report.joins.append(self.peer.timings["join"])  # the ack, not deviceLoad
            else:
                await self.sio.connect(
                    self.url, auth={"token": self.seat.token}, transports=["websocket"]
                )
                started = time.perf_counter()
                ack = await self.call("join", {"consultationId": self.seat.room})
                self.report.joins.append(time.perf_counter() - started)
            self.joined = True
        except Exception as exc:  # every failure is a result of the run
            self.report.errors[f"join:{error_code(exc)}"] += 1
            return None
        if self.peer is not None:
            try:
                await self.peer.start_sending()
                await self.peer.start_receiving()
            except Exception as exc:
                self.report.errors[f"media:{error_code(exc)}"] += 1
        return ack

    async def event(self, into: list[float]) -> None:
        started = time.perf_counter()
        try:
            await self.call("getRouterRtpCapabilities", {})
            into.append(time.perf_counter() - started)
        except Exception as exc:
            self.report.errors[f"getRouterRtpCapabilities:{error_code(exc)}"] += 1

    async def paced_events(self, until: float) -> None:
        await asyncio.sleep(random.random())  # its own phase within the second
        while time.monotonic() < until:
            tick = time.monotonic()
            await self.event(self.report.events)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    async def close(self) -> None:
        try:
            if self.peer is not None:
                if self.joined:
                    await self.peer.leave()
                await self.peer.close()
            else:
                await self.sio.disconnect()
        except Exception as exc:
            self.report.errors[f"leave:{error_code(exc)}"] += 1


async def _admit_waiting(clinician: _Participant, ack: dict[str, Any] | None) -> None:
    """The room's clinician lets in whoever the call type puts in the waiting room."""
    if ack is None or ack.get("admission", {}).get("state") != "waiting":
        return
    try:
        await clinician.call("admitParticipant", {"peerId": ack["peerId"]})
    except Exception as exc:
        clinician.report.errors[f"admitParticipant:{error_code(exc)}"] += 1


async def _arrive(clinician: _Participant, person: _Participant) -> None:
    ack = await person.arrive()
    if person is not clinician:
        await _admit_waiting(clinician, ack)


Pair = tuple[_Participant, _Participant]  # (the room's clinician, a participant)


async def _in_waves(
    pairs: list[Pair], wave: int, action: Callable[[_Participant, _Participant], Awaitable[None]]
) -> None:
    for start in range(0, len(pairs), wave):
        await asyncio.gather(*(action(*pair) for pair in pairs[start : start + wave]))


async def _media_figures(report: Report, people: list[_Participant], members: int) -> None:
    now = time.monotonic()
    for person in people:
        peer = person.peer
        if peer is None or not person.joined:
            continue
        report.tracks_expected += 2 * (members - 1)
        if peer.resumer is not None:
            report.media_failures += peer.resumer.media_failures
            report.rejoins += peer.resumer.rejoins
        for track in peer.received.values():
            report.frames += track.frames
            if track.last_frame_at is not None and now - track.last_frame_at < 2.0:
                report.tracks_receiving += 1
            if track.kind == "video" and track.first_frame_at and peer.join_started_at:
                report.first_frames.append(track.first_frame_at - peer.join_started_at)
        for connection in peer.peer_connections():
            for stats in (await connection.getStats()).values():
                if stats.type == "inbound-rtp":
                    report.packets_received += stats.packetsReceived
                    report.packets_lost += max(0, stats.packetsLost)
                elif stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
                    report.rtts.append(stats.roundTripTime)


@contextmanager
def _quiet_collector() -> Iterator[None]:
    """While the figures are taken: with 1,000 clients in this process a full
    garbage collection held its event loop 100-200 ms, which would be measured as
    the deployment's latency.  What exists now (the clients) is frozen out of
    collections and young collections come 20,000 allocations apart; both are
    undone afterwards."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def run_load(
    url: str,
    rooms: list[list[Seat]],
    *,
    seconds: float,
    media: bool,
    wave: int = 50,
    burst: bool = False,
    joined: Callable[[], Awaitable[None]] | None = None,
) -> Report:
    """Join every room's seats, hold for ``seconds``, leave; the figures.  With
    ``burst``, every participant also sends one cheap event at the same moment
    at the end; ``joined`` is awaited once everyone has joined."""
    members = max((len(room) for room in rooms), default=0)
    report = Report(len(rooms), members, "media" if media else "signaling", seconds)
    people = [[_Participant(url, seat, media, report) for seat in room] for room in rooms]
    try:
        await _in_waves([(room[0], room[0]) for room in people], wave, _arrive)
        await _in_waves([(room[0], p) for room in people for p in room[1:]], wave, _arrive)
        everyone = [person for room in people for person in room if person.joined]
        if joined is not None:
            await joined()
        with _quiet_collector():
            until = time.monotonic() + seconds
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.gather(*(person.paced_events(until) for person in everyone))
            report.generator_cpu = (time.process_time() - cpu) / max(1e-6, time.monotonic() - wall)
            if burst:
                started = time.perf_counter()
                await asyncio.gather(*(person.event(report.burst) for person in everyone))
                report.burst_wall = time.perf_counter() - started
        if media:
            await _media_figures(report, everyone, members)
    finally:
        await asyncio.gather(*(person.close() for room in people for person in room))
    return report
