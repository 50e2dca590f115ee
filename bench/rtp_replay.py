"""Replayed RTP for the capacity benchmark: media encoded once, sent many times.

``capture()`` has ffmpeg encode LOOP_SECONDS of a 640x480 pattern (VP8, about
800 kbps, 30 fps, a key frame every 2 s) and a tone (Opus, 64 kbps) as RTP, and
keeps the packets (cached in ~/.cache/telemed/bench).  ``Replayer`` sends them,
looped, for any number of streams at once, each with its own SSRC, sequence
numbers and timestamps, on the packets' own schedule (their RTP timestamps),
from one thread and one socket.  ``Sink`` receives every consumer's RTP on one
socket, counts packets and gaps per SSRC (receiver loss), and answers each
sender report with a receiver report, so that mediasoup computes the round-trip
time of its consumers as it does for a browser.

Nothing is encoded or decoded per stream: the generator costs a few microseconds
per packet, so the SFU worker, not the generator, is what runs out first.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from base64 import b64decode, b64encode
from dataclasses import dataclass, field
from pathlib import Path

LOOP_SECONDS = 10.0
VIDEO_PT, AUDIO_PT = 96, 111
CLOCK = {"video": 90000, "audio": 48000}
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "telemed" / "bench"
_HEADER = struct.Struct("!BBHII")


@dataclass
class Track:
    kind: str
    packets: list[tuple[float, int, bytes]]  # (due offset s, marker+PT byte, payload)
    period: float  # loop length on this track's clock, seconds

    @property
    def bitrate(self) -> float:
        return sum(len(p) + 12 for _, _, p in self.packets) * 8 / self.period


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    return sock


def _collect(sock: socket.socket, into: list[bytes], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            into.append(sock.recv(65536))
        except TimeoutError:
            continue


def _track(kind: str, raw: list[bytes]) -> Track:
    clock = CLOCK[kind]
    rtp = [p for p in raw if len(p) > 12 and p[1] & 0x7F in (VIDEO_PT, AUDIO_PT)]
    first = struct.unpack_from("!I", rtp[0], 4)[0]
    packets = []
    for packet in rtp:
        ts = struct.unpack_from("!I", packet, 4)[0]
        packets.append((((ts - first) & 0xFFFFFFFF) / clock, packet[1], packet[12:]))
    frame = 1 / 30 if kind == "video" else 0.02
    return Track(kind, packets, packets[-1][0] + frame)


def capture() -> dict[str, Track]:
    """The encoded loop, made by ffmpeg on the first run (about LOOP_SECONDS)."""
    path = CACHE / "replay-640x480-vp8-800k-opus-v1.json"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        sockets = {"video": _listen(), "audio": _listen()}
        got: dict[str, list[bytes]] = {"video": [], "audio": []}
        stop = threading.Event()
        threads = [
            threading.Thread(target=_collect, args=(sockets[k], got[k], stop), daemon=True)
            for k in sockets
        ]
        for thread in threads:
            thread.start()
        port = {k: s.getsockname()[1] for k, s in sockets.items()}
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x480:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                str(LOOP_SECONDS),
                "-map",
                "0:v",
                "-c:v",
                "libvpx",
                "-b:v",
                "800k",
                "-minrate",
                "800k",
                "-maxrate",
                "800k",
                "-bufsize",
                "400k",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-g",
                "60",
                "-payload_type",
                str(VIDEO_PT),
                "-f",
                "rtp",
                f"rtp://127.0.0.1:{port['video']}?pkt_size=1200",
                "-map",
                "1:a",
                "-t",
                str(LOOP_SECONDS),
                "-c:a",
                "libopus",
                "-b:a",
                "64k",
                "-ac",
                "2",
                "-payload_type",
                str(AUDIO_PT),
                "-f",
                "rtp",
                f"rtp://127.0.0.1:{port['audio']}?pkt_size=1200",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the SDP it prints
            timeout=LOOP_SECONDS + 30,
        )
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        path.write_text(json.dumps({k: [b64encode(p).decode() for p in v] for k, v in got.items()}))
    stored = json.loads(path.read_text())
    return {k: _track(k, [b64decode(p) for p in v]) for k, v in stored.items()}


@dataclass
class Stream:
    track: Track
    ssrc: int
    address: tuple[str, int]
    start: float  # monotonic time of offset 0 of the first loop
    seq: int = 0
    ts_base: int = 0
    index: int = 0
    loops: int = 0


class Replayer:
    """One thread sends every stream's packets when they are due."""

    def __init__(self, tick: float = 0.005) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self._sock.bind(("127.0.0.1", 0))
        self._streams: list[Stream] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tick = tick
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, track: Track, ssrc: int, address: tuple[str, int], phase: float) -> Stream:
        """``phase``: where in the loop this stream starts (so key frames spread)."""
        stream = Stream(track, ssrc, address, time.monotonic() - phase, seq=ssrc & 0xFFFF)
        stream.ts_base = (ssrc * 7919) & 0xFFFFFFFF
        while stream.index < len(track.packets) and track.packets[stream.index][0] < phase:
            stream.index += 1
        with self._lock:
            self._streams.append(stream)
        return stream

    def clear(self) -> None:
        with self._lock:
            self._streams = []

    def _run(self) -> None:
        pack, send = _HEADER.pack, self._sock.sendto
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                streams = list(self._streams)
            for s in streams:
                packets = s.track.packets
                clock = CLOCK[s.track.kind]
                while True:
                    if s.index == len(packets):
                        s.index, s.loops = 0, s.loops + 1
                    offset, marker_pt, payload = packets[s.index]
                    due = s.start + s.loops * s.track.period + offset
                    if due > now:
                        break
                    ts = (s.ts_base + int((s.loops * s.track.period + offset) * clock)) & 0xFFFFFFFF
                    s.seq = (s.seq + 1) & 0xFFFF
                    try:
                        send(pack(0x80, marker_pt, s.seq, ts, s.ssrc) + payload, s.address)
                    except BlockingIOError:
                        pass  # a full socket buffer drops the packet, as a network would
                    except OSError:
                        return  # closed by stop()
                    s.index += 1
            time.sleep(self._tick)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@dataclass
class Received:
    packets: int = 0
    first_seq: int | None = None
    highest: int = 0  # extended highest sequence number
    lsr: int = 0  # middle 32 bits of the last sender report's NTP time
    sr_at: float = 0.0
    source: tuple[str, int] | None = None
    reported_expected: int = 0
    reported_packets: int = 0

    def expected(self) -> int:
        return 0 if self.first_seq is None else self.highest - self.first_seq + 1

    def lost(self) -> int:
        return max(0, self.expected() - self.packets)


@dataclass
class Sink:
    """Every consumer sends here; one thread reads, counts and reports."""

    streams: dict[int, Received] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sock = _listen()
        self._sock.settimeout(0.05)
        self.address = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, ssrc: int) -> None:
        self.streams[ssrc] = Received()

    def reset(self) -> None:
        """Count from now on (the streams already known stay known)."""
        for ssrc in list(self.streams):
            self.streams[ssrc] = Received()

    def _run(self) -> None:
        recv, unpack = self._sock.recvfrom, struct.unpack_from
        next_report = time.monotonic() + 1.0
        while not self._stop.is_set():
            try:
                data, source = recv(65536)
            except TimeoutError:
                data = b""
            except OSError:
                return  # closed by stop()
            if len(data) >= 12:
                pt = data[1]
                if 200 <= pt <= 204:
                    self._rtcp(data, source)
                else:
                    ssrc = unpack("!I", data, 8)[0]
                    got = self.streams.get(ssrc)
                    if got is not None:
                        seq = unpack("!H", data, 2)[0]
                        if got.first_seq is None:
                            got.first_seq = got.highest = seq
                        else:
                            # Extend to 32 bits: nearest to the highest seen.
                            ext = (got.highest & ~0xFFFF) | seq
                            if ext < got.highest - 0x8000:
                                ext += 0x10000
                            elif ext > got.highest + 0x8000:
                                ext -= 0x10000
                            got.highest = max(got.highest, ext)
                        got.packets += 1
            now = time.monotonic()
            if now >= next_report:
                self._report(now)
                next_report = now + 1.0

    def _rtcp(self, data: bytes, source: tuple[str, int]) -> None:
        offset = 0
        while offset + 8 <= len(data):
            pt = data[offset + 1]
            length = (struct.unpack_from("!H", data, offset + 2)[0] + 1) * 4
            if pt == 200 and offset + 20 <= len(data):  # sender report
                ssrc = struct.unpack_from("!I", data, offset + 4)[0]
                got = self.streams.get(ssrc)
                if got is not None:
                    got.lsr = struct.unpack_from("!I", data, offset + 10)[0]
                    got.sr_at, got.source = time.monotonic(), source
            offset += length

    def _report(self, now: float) -> None:
        for ssrc, got in list(self.streams.items()):
            if got.source is None or got.first_seq is None:
                continue
            expected = got.expected()
            interval_expected = expected - got.reported_expected
            interval_lost = interval_expected - (got.packets - got.reported_packets)
            fraction = (
                min(255, max(0, interval_lost * 256 // interval_expected))
                if interval_expected > 0
                else 0
            )
            got.reported_expected, got.reported_packets = expected, got.packets
            cumulative = min(got.lost(), 0x7FFFFF)
            dlsr = int((now - got.sr_at) * 65536)
            block = struct.pack(
                "!IIIIII",
                ssrc,
                (fraction << 24) | cumulative,
                got.highest & 0xFFFFFFFF,
                0,
                got.lsr,
                dlsr,
            )
            packet = struct.pack("!BBHI", 0x81, 201, 7, 0x5EED5EED) + block
            with contextlib.suppress(OSError):  # closed by stop()
                self._sock.sendto(packet, got.source)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
