"""A recording's segments joined into one Matroska file, without re-encoding.

A segment is a complete file holding the producers that were live when it began
(sfu_worker/src/recorder.js starts the next one when a producer appears).  The
joined file has one track per participant's source (a camera sent again, for
instance with simulcast layers, continues its track), in order of first
appearance; a track that appears late starts at its own time.  Consecutive
segments overlap by a moment: they record the same RTP packets, so the first key
frame of a video track in the next segment is found byte for byte in the previous
one, which places the next segment on the previous one's clock exactly (the
node's wall-clock start is the fallback).  A track switches to its next piece (the
same producer in the next segment, or the producer that replaced it) at that
piece's first key frame (video) or first packet (audio), and only moves forward in
time; a newer producer never gives the track back to an older one.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream


@dataclass(frozen=True)
class Segment:
    data: bytes  # the decrypted Matroska file
    started_ms: int  # the node's wall clock when it began
    producers: list[str]  # the producer of each of its streams, in stream order
    # The track of each stream ("peer/source"); None: one track per producer.
    tracks: list[str] | None = None

    def track(self, index: int) -> str:
        return self.tracks[index] if self.tracks else self.producers[index]


@dataclass(frozen=True)
class _First:
    seconds: float  # within its segment
    digest: bytes
    kind: str


def _seconds(packet: Packet[Stream]) -> float:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float((stamp or 0) * Fraction(packet.time_base))


def _packets(segment: Segment) -> Iterator[tuple[str, Packet[Stream]]]:
    with av.open(io.BytesIO(segment.data), format="matroska") as container:
        assert isinstance(container, InputContainer)
        for packet in container.demux():
            if packet.dts is not None and packet.size:
                yield segment.producers[packet.stream.index], packet


def _firsts(segment: Segment) -> dict[str, _First]:
    """Per producer: its first key frame (video) or first packet (audio)."""
    found: dict[str, _First] = {}
    for producer, packet in _packets(segment):
        kind = packet.stream.type
        if producer in found or (kind == "video" and not packet.is_keyframe):
            continue
        found[producer] = _First(_seconds(packet), hashlib.sha256(bytes(packet)).digest(), kind)
        if len(found) == len(set(segment.producers)):
            break
    return found


def _offset(
    previous: Segment, previous_offset: float, nxt: Segment, firsts: dict[str, _First]
) -> float:
    """Where ``nxt`` starts on the joined clock, in seconds."""
    anchors = {
        first.digest: (producer, first.seconds)
        for producer, first in firsts.items()
        if first.kind == "video" and producer in previous.producers
    }
    for producer, packet in _packets(previous):
        anchor = anchors.get(hashlib.sha256(bytes(packet)).digest())
        if anchor is not None and anchor[0] == producer:
            return previous_offset + _seconds(packet) - anchor[1]
    return previous_offset + (nxt.started_ms - previous.started_ms) / 1000


Piece = tuple[int, str]  # (segment index, producer)


def _tracks(segments: list[Segment]) -> dict[Piece, str]:
    """The output track of each piece: its stream's track, unless that track
    already holds another codec (then one of its own)."""
    codecs: dict[str, str] = {}
    track_of: dict[Piece, str] = {}
    for k, segment in enumerate(segments):
        with av.open(io.BytesIO(segment.data), format="matroska") as container:
            for stream in container.streams:
                producer = segment.producers[stream.index]
                track = segment.track(stream.index)
                codec = f"{stream.type}/{stream.codec_context.name}"
                if codecs.setdefault(track, codec) != codec:
                    track = f"{track}#{producer}"
                    codecs.setdefault(track, codec)
                track_of[(k, producer)] = track
    return track_of


def _ends(
    track_of: dict[Piece, str], starts: dict[Piece, float], segments: list[Segment]
) -> dict[Piece, float]:
    """Where each piece stops: at the earliest start of a later piece of its track,
    later meaning of a producer that appeared later, or of the same producer in a
    later segment."""
    rank: dict[str, int] = {}
    for segment in segments:
        for producer in segment.producers:
            rank.setdefault(producer, len(rank))
    ordered = sorted(track_of, key=lambda piece: (rank[piece[1]], piece[0]))
    ends: dict[Piece, float] = {}
    for i, piece in enumerate(ordered):
        later = [
            starts[other]
            for other in ordered[i + 1 :]
            if track_of[other] == track_of[piece] and other in starts
        ]
        ends[piece] = min(later, default=float("inf"))
    return ends


class _AudioJoins:
    """Where a track's audio passes from one piece to the next.  The two pieces'
    clocks agree to within a packet or so (each segment's ffmpeg re-bases on its
    own first sender report), so the next piece's first packets can repeat the
    last ones written (the same bytes a few ms later) or overlap them: repeats
    are dropped, and the piece is moved later by the overlap, as a whole, so
    its audio never overlaps the previous piece's (decoders and players stumble
    on that)."""

    HEAD = 5  # packets at a piece's start checked for repeats
    RECENT = 5  # packets of a track remembered

    def __init__(self) -> None:
        self._recent: dict[str, list[tuple[bytes, int]]] = {}  # track: (digest, end)
        self._extra: dict[Piece, int] = {}
        self._seen: dict[Piece, int] = {}

    def place(self, piece: Piece, track: str, packet: Packet[Stream], dts: int) -> int | None:
        """How much later to write ``packet`` (at ``dts``), or None to drop it."""
        recent = self._recent.setdefault(track, [])
        digest = hashlib.sha256(bytes(packet)).digest()
        seen = self._seen.get(piece, 0)
        self._seen[piece] = seen + 1
        if piece not in self._extra:
            if seen < self.HEAD and any(digest == old for old, _ in recent):
                return None  # both segments recorded it
            self._extra[piece] = max(0, recent[-1][1] - dts) if recent else 0
        extra = self._extra[piece]
        recent.append((digest, dts + extra + (packet.duration or 0)))
        del recent[: -self.RECENT]
        return extra


def merge(segments: list[Segment]) -> bytes:
    if len(segments) == 1:
        return segments[0].data
    firsts = [_firsts(segment) for segment in segments]
    offsets = [0.0]
    for k in range(1, len(segments)):
        offsets.append(_offset(segments[k - 1], offsets[k - 1], segments[k], firsts[k]))
    track_of = _tracks(segments)
    starts = {
        (k, producer): offsets[k] + first.seconds
        for k, found in enumerate(firsts)
        for producer, first in found.items()
    }
    ends = _ends(track_of, starts, segments)
    out_buffer = io.BytesIO()
    with av.open(out_buffer, "w", format="matroska") as out:
        tracks = {}
        for k, segment in enumerate(segments):
            with av.open(io.BytesIO(segment.data), format="matroska") as container:
                for stream in container.streams:
                    track = track_of[(k, segment.producers[stream.index])]
                    if track not in tracks:
                        tracks[track] = out.add_stream_from_template(stream)
        last: dict[str, int] = {}
        joins = _AudioJoins()
        for k, segment in enumerate(segments):
            started: set[str] = set()
            for producer, packet in _packets(segment):
                piece = (k, producer)
                track = track_of[piece]
                if packet.stream.type == "video" and producer not in started:
                    if not packet.is_keyframe:
                        continue  # refers to frames this segment does not have
                    started.add(producer)
                at = offsets[k] + _seconds(packet)
                if at >= ends[piece] - 1e-6:
                    continue  # the track has moved on to a later piece
                shift = round(offsets[k] / Fraction(packet.time_base))
                dts = (packet.dts or 0) + shift
                if packet.stream.type == "audio":
                    extra = joins.place(piece, track, packet, dts)
                    if extra is None:
                        continue
                    shift, dts = shift + extra, dts + extra
                packet.pts = packet.pts + shift if packet.pts is not None else None
                if dts <= last.get(track, -(2**62)):
                    continue
                packet.dts = last[track] = dts
                packet.stream = tracks[track]
                out.mux(packet)
    return out_buffer.getvalue()
