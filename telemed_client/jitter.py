"""A video jitter buffer that hands a frame to the decoder once its last packet
(the one with the RTP marker bit) is in, as browsers do.

aiortc's ``JitterBuffer`` knows a video frame is complete only when the first
packet of the next frame arrives (a new timestamp), so every frame, the first
one after a join included, reaches the decoder one frame interval late (33 ms at
30 fps).  ``use_frame_end_jitter_buffer()`` makes aiortc's receivers in this
process use ``FrameEndJitterBuffer`` instead; audio is unchanged.
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket


class FrameEndJitterBuffer(JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        if frame is not None or not self._is_video or self._origin is None:
            return frame
        # The oldest frame, if all of it is in: contiguous packets of one
        # timestamp from the oldest, the last of them marked.
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(
                    data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                    timestamp=packet.timestamp,
                )
        return None


def use_frame_end_jitter_buffer() -> None:
    """aiortc receivers made from now on in this process use FrameEndJitterBuffer."""
    setattr(rtcrtpreceiver, "JitterBuffer", FrameEndJitterBuffer)  # noqa: B010 (not exported)
