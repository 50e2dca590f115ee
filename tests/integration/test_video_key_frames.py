"""A video consumer whose sender missed the key frame requests is not left black.

mediasoup forwards a video consumer nothing until a key frame of its producer
passes, and asks the sender for one when the consumer starts and once more a
second later.  A sender that misses both (its path was down, its encoder was not
ready) would leave the receiver with no packet at all, so the receiver asks for
nothing either.  The SFU node checks a new (or restarted) video consumer a few
times and asks again while it forwards nothing although its producer receives.

The fault: the key frame requests to the patient's aiortc video sender are lost
for the first 2.2 s after the physician starts receiving (the patient sent its
first key frame before anyone consumed it).  Its bandwidth estimates are dropped
all along: on one, aiortc starts a new encoder, hence a key frame, which a
browser does not do.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, AnyRtcpPacket, RtcpPsfbPacket

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id

pytestmark = pytest.mark.integration

DEAF_SECONDS = 2.2


async def test_a_sender_that_missed_the_key_frame_requests_is_asked_again(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id("kf")
    patient = MediaPeer(stack.url, stack.token(room, "pt-kf", "patient"), video_size=(640, 480))
    doctor = MediaPeer(stack.url, stack.token(room, "dr-kf", "physician"), send_video=False)
    peers.extend([patient, doctor])
    await patient.connect()
    await patient.join(room)
    await patient.start_sending()
    await asyncio.sleep(1.0)  # its first key frame has reached the SFU; nobody consumes yet

    sender = patient.producers["camera"].rtpSender
    assert sender is not None
    handle = sender._handle_rtcp_packet
    requests: list[bool] = []  # honoured?
    deaf_until = time.monotonic() + DEAF_SECONDS

    async def lossy_feedback(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt not in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                return  # bandwidth estimates: aiortc would start a new encoder (a key frame)
            requests.append(time.monotonic() >= deaf_until)
            if not requests[-1]:
                return
        await handle(packet)

    sender._handle_rtcp_packet = lossy_feedback  # type: ignore[method-assign]

    await doctor.connect()
    await doctor.join(room)
    await doctor.start_receiving()
    camera = await doctor.wait_for_frames("pt-kf", "video", count=5, timeout=12)
    assert camera.width == 640 and camera.height == 480
    # mediasoup's own requests came while the sender was deaf; a later one did it.
    assert requests[:1] == [False] and True in requests, requests
    assert camera.first_frame_at is not None and camera.first_frame_at >= deaf_until
