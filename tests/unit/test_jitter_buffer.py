"""FrameEndJitterBuffer: a video frame goes to the decoder with its last (marked)
packet, not when the next frame begins; a frame with a packet missing waits."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from telemed_client.jitter import FrameEndJitterBuffer


def packet(seq: int, timestamp: int, marker: bool = False) -> RtpPacket:
    made = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, marker=int(marker))
    made._data = f"{seq};".encode()  # type: ignore[attr-defined]
    return made


def frames_of(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, bytes] | None]:
    out = []
    for item in packets:
        _, frame = buffer.add(item)
        out.append(None if frame is None else (frame.timestamp, frame.data))
    return out


def test_a_frame_is_handed_over_with_its_marked_packet() -> None:
    first = [packet(10, 3000), packet(11, 3000), packet(12, 3000, marker=True)]
    assert frames_of(FrameEndJitterBuffer(capacity=128, is_video=True), first) == [
        None,
        None,
        (3000, b"10;11;12;"),
    ]
    # aiortc's own buffer waits for the next frame's first packet.
    assert frames_of(JitterBuffer(capacity=128, is_video=True), first) == [None, None, None]


def test_frames_follow_one_another_and_a_gap_holds_a_frame_back() -> None:
    buffer = FrameEndJitterBuffer(capacity=128, is_video=True)
    assert frames_of(buffer, [packet(1, 100, marker=True)]) == [(100, b"1;")]
    # 3 is late: frame 200 is not complete at its marked packet, only once 3 comes.
    assert frames_of(buffer, [packet(2, 200), packet(4, 200, marker=True)]) == [None, None]
    assert frames_of(buffer, [packet(3, 200)]) == [(200, b"2;3;4;")]
    assert frames_of(buffer, [packet(5, 300), packet(6, 300, marker=True)]) == [
        None,
        (300, b"5;6;"),
    ]
    # A packet of a frame already handed over (a retransmission) is dropped.
    assert frames_of(buffer, [packet(6, 300, marker=True)]) == [None]


def test_audio_is_left_as_aiortc_has_it() -> None:
    buffer = FrameEndJitterBuffer(capacity=16, prefetch=4)
    assert frames_of(buffer, [packet(1, 960, marker=True)]) == [None]
