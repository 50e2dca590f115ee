"""The active speaker (issue 13): mediasoup's audio level observer on each room's
router; the participants in the call are told who speaks loudest, and when
nobody does."""

from __future__ import annotations

import pytest

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


async def test_the_room_hears_who_speaks_and_when_everyone_is_silent(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id("as")
    speaker = MediaPeer(stack.url, stack.token(room, "dr-speaks", "physician"))
    listener = MediaPeer(stack.url, stack.token(room, "pt-listens", "patient"), media="silent")
    third = MediaPeer(stack.url, stack.token(room, "rn-listens", "nurse"), media="silent")
    peers.extend([speaker, listener, third])
    await start_call(room, speaker, listener, third)
    for peer in (listener, third, speaker):
        heard = await peer.wait_for_event("activeSpeaker", lambda d: d["peerId"] == "dr-speaks")
        assert heard["producerId"] == speaker.producers["mic"].id
    mic = speaker.producers["mic"].id
    await speaker.request("pauseProducer", {"producerId": mic})
    silent = await listener.wait_for_event("activeSpeaker", lambda d: d["peerId"] is None)
    assert silent == {"peerId": None, "producerId": None}
    await speaker.request("resumeProducer", {"producerId": mic})
    events = len([e for e in listener.events if e.name == "activeSpeaker"])
    await listener.wait_for_event(
        "activeSpeaker",
        lambda d: (
            d["peerId"] == "dr-speaks"
            and len([e for e in listener.events if e.name == "activeSpeaker"]) > events
        ),
    )
    # One notice per change and participant (not one per control-plane instance).
    names = [e.data["peerId"] for e in listener.events if e.name == "activeSpeaker"]
    assert names == ["dr-speaks", None, "dr-speaks"], names
