"""A Python peer whose media connection ends under it joins again, as the page
does: the SFU closes its receive transport (mediasoup's DTLS close reaches the
peer), it records ``mediaFailed``, leaves, joins with new transports and decodes
the other side again, and the other side decodes it again.  A transport closed
because the peer left is no failure."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.media.room_state import RoomState
from controlplane.placement.sfu_client import SfuClient
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration


async def _sfu_request(stack: Stack, method: str, params: dict) -> dict:
    client = SfuClient("sfu-test-1", stack.sfu.url, stack.sfu_secret, timeout=5)
    try:
        return await client.request(method, params)
    finally:
        await client.close()


async def _new_frames(
    receiver: MediaPeer, sender: str, old: set[str], count: int = 10, timeout: float = 20.0
) -> None:
    """A video track from ``sender`` on a consumer not in ``old`` decodes ``count`` frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            t.consumer_id not in old and t.frames >= count
            for t in receiver.tracks_from(sender, "video")
        ):
            return
        await asyncio.sleep(0.1)
    seen = [(t.consumer_id in old, t.frames) for t in receiver.tracks_from(sender, "video")]
    raise AssertionError(f"no new video from {sender}: {seen}; errors {receiver.errors}")


async def test_a_receive_transport_closed_by_the_sfu_is_replaced_by_a_rejoin(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=10)
    await doctor.wait_for_frames("pt-joao", "video", count=10)
    assert patient.recv_transport is not None and patient.resumer is not None
    old_recv = patient.recv_transport.id
    at_patient = {t.consumer_id for t in patient.received.values()}
    at_doctor = {t.consumer_id for t in doctor.received.values()}

    closed = time.monotonic()
    assert await _sfu_request(stack, "closeTransport", {"transportId": old_recv})

    failed = await patient.wait_for_event(
        "mediaFailed", lambda d: d["transportId"] == old_recv, timeout=40
    )
    detected = time.monotonic() - closed
    await patient.wait_for_event("rejoined", timeout=20)
    await _new_frames(patient, "dr-ana", at_patient)
    await _new_frames(doctor, "pt-joao", at_doctor)
    assert patient.recv_transport is not None and patient.recv_transport.id != old_recv
    assert patient.resumer.rejoins == 1 and patient.resumer.media_failures == 1
    assert patient.errors == [] and doctor.errors == []
    print(f"failure seen after {detected:.2f} s ({failed['reason']})")


async def test_transports_closed_by_a_leave_are_no_failure(
    stack: Stack, peers: list[MediaPeer], redis
) -> None:
    room = new_room_id()
    doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=5)
    await patient.leave()
    await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-joao")
    await asyncio.sleep(2.0)  # the SFU's DTLS close has reached the patient by now
    assert [e.name for e in patient.events if e.name in ("mediaFailed", "rejoined")] == []
    assert await RoomState(redis).participant_ids(room) == ["dr-ana"]
