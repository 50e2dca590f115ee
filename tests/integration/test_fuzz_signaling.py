"""Every Socket.IO event fuzzed from its schema (hypothesis): payloads with the
schema's field names and arbitrary JSON, the ids of the fuzzer's own objects and
of another participant's, random ids.  Each ack must be a documented error or a
result (never INTERNAL_ERROR), the server log must hold no unhandled exception, and
the other consultation must be exactly as it was, its media still decoding.

The budget is bounded here (``FUZZ_EXAMPLES`` per event); ``bench/fuzz.py`` runs
the same with a larger one.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.media.room_state import RoomState
from schemas.errors import ErrorCode
from signaling.handlers import EVENTS
from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call
from tests.fault_injection import Instance

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DOCUMENTED = {str(code) for code in ErrorCode} - {str(ErrorCode.INTERNAL_ERROR)}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def field_names(event: str) -> list[str]:
    schema = EVENTS[event][0]()
    return [f.data_key or name for name, f in schema.fields.items()]


def plausible(name: str, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Values that get past validation often enough to reach the handlers: for an
    id, one of the other consultation's, one of the fuzzer's own, or a random one."""
    if name.endswith("Id"):
        return st.sampled_from(ids["theirs"]) | st.sampled_from(ids["own"]) | st.uuids().map(str)
    choices: dict[str, list[Any]] = {
        "kind": ["audio", "video", "data"],
        "appData": [{"source": s} for s in ("mic", "camera", "screen", "x")],
        "direction": ["send", "recv", "both"],
        "paused": [True, False],
        "dtlsParameters": [
            {
                "role": "client",
                "fingerprints": [{"algorithm": "sha-256", "value": "AB:" * 31 + "AB"}],
            }
        ],
        "rtpCapabilities": [
            {"codecs": [{"mimeType": "video/VP8", "kind": "video", "clockRate": 90000}]}
        ],
        "rtpParameters": [
            {"codecs": [{"mimeType": "audio/opus", "clockRate": 48000, "payloadType": 100}]}
        ],
    }
    return st.sampled_from(choices[name]) if name in choices else st.nothing()


def payloads(event: str, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    names = field_names(event)
    every_field = st.fixed_dictionaries({name: plausible(name, ids) for name in names})
    some_fields = st.fixed_dictionaries(
        {}, optional={name: plausible(name, ids) | json_values for name in names}
    )
    extra = st.dictionaries(st.sampled_from([*names, "__proto__", "x"]), json_values, max_size=3)
    return (
        every_field
        | some_fields
        | st.builds(lambda a, b: {**a, **b}, some_fields, extra)
        | json_values
    )


def comparable(snapshot: dict[str, Any] | None) -> str:
    return json.dumps(snapshot, sort_keys=True, default=str)


def object_ids(snapshot: dict[str, Any] | None) -> list[str]:
    ids: list[str] = []
    for peer in (snapshot or {}).get("peers", []):
        ids += list(peer["transports"])  # transport id -> direction
        ids += [p["producerId"] for p in peer["producers"]]
        ids += [c["consumerId"] for c in peer["consumers"]]
    return ids


# aiortc's media threads use `random` while hypothesis draws: not the strategies'.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_fuzzed_events_get_documented_answers_and_touch_nobody_else(
    stack: Stack, instance: Callable[..., Instance], peers: list[MediaPeer], redis
) -> None:
    cp = instance()
    victims_room, own_room = new_room_id(), new_room_id()
    doctor = MediaPeer(cp.url, stack.token(victims_room, "dr-victim", "physician"))
    patient = MediaPeer(cp.url, stack.token(victims_room, "pt-victim", "patient"))
    fuzzer = MediaPeer(cp.url, stack.token(own_room, "pt-fuzzer", "patient"))
    partner = MediaPeer(cp.url, stack.token(own_room, "dr-partner", "physician"))
    peers.extend([doctor, patient, fuzzer, partner])
    await start_call(victims_room, doctor, patient)
    await start_call(own_room, fuzzer, partner)
    tracks = [
        await receiver.wait_for_frames(sender, kind, count=5)
        for receiver, sender in ((doctor, "pt-victim"), (patient, "dr-victim"))
        for kind in ("audio", "video")
    ]

    async def victims_receive_everything() -> bool:
        counts = [track.frames for track in tracks]
        await asyncio.sleep(0.6)
        return all(track.frames > count + 3 for track, count in zip(tracks, counts, strict=True))

    state = RoomState(redis)
    before = await state.snapshot(victims_room)
    ids = {
        "theirs": object_ids(before),
        "own": [*object_ids(await state.snapshot(own_room)), str(uuid.uuid4())],
    }
    loop = asyncio.get_running_loop()
    answers: dict[str, list[str]] = {}

    def fuzz(event: str) -> None:
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(payloads(event, ids))
        def one(payload: Any) -> None:
            call = fuzzer.sio.call(event, payload, timeout=15)
            ack = asyncio.run_coroutine_threadsafe(call, loop).result(20)
            assert isinstance(ack, dict), (event, payload, ack)
            error = ack.get("error")
            code = error.get("code") if isinstance(error, dict) else "ok"
            assert code == "ok" or code in DOCUMENTED, (event, payload, ack)
            answers.setdefault(event, []).append(code)

        one()

    for event in sorted(set(EVENTS) - {"leave"}):
        await asyncio.to_thread(fuzz, event)
        # Nothing of the other consultation changed, and all its media still flows.
        assert comparable(await state.snapshot(victims_room)) == comparable(before), event
        assert await victims_receive_everything(), event
        if not fuzzer.sio.connected:
            await fuzzer.connect()  # a fuzzed event may end in a refused resume
    assert doctor.errors == [] and patient.errors == []
    log = cp.process.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "signaling_internal_error" not in log
    # The fuzzer reached past validation on every event that takes ids.
    reached = {e for e, codes in answers.items() if any(c != "VALIDATION_ERROR" for c in codes)}
    assert {"closeProducer", "pauseConsumer", "restartIce", "connectTransport"} <= reached, answers
