"""What the server asks the SFU to give a subscriber of a simulcast camera
(controlplane/media/layers.py): a ceiling from the tile size, a priority."""

from __future__ import annotations

from controlplane.media.layers import (
    HOLD_FIRST,
    HOLD_MAX,
    HOLD_RESET,
    LARGE_PRIORITY,
    OTHER_PRIORITY,
    SPEAKER_PRIORITY,
    Choice,
    Hold,
    LayerState,
    choose,
    held_after_drop,
    layer_heights,
    size_layer,
)
from controlplane.media.profiles import profile_for

# Group therapy captures 1280x720: layers 180, 360 and 720 pixels tall.
HEIGHTS = layer_heights(profile_for("group_therapy"))


def test_the_layers_follow_the_profile() -> None:
    assert HEIGHTS == [180, 360, 720]
    assert layer_heights(profile_for("emergency")) == [120, 240, 480]
    encodings = profile_for("group_therapy").to_client()["simulcastEncodings"]
    assert encodings == [
        {"scaleResolutionDownBy": 4, "maxBitrate": 375_000},
        {"scaleResolutionDownBy": 2, "maxBitrate": 1_000_000},
        {"scaleResolutionDownBy": 1, "maxBitrate": 3_000_000},
    ]


def test_the_smallest_layer_that_fills_the_tile() -> None:
    assert size_layer(HEIGHTS, 120) == 0
    assert size_layer(HEIGHTS, 190) == 0  # 180 is within a tenth of 190
    assert size_layer(HEIGHTS, 240) == 1
    assert size_layer(HEIGHTS, 400) == 1  # 360 is within a tenth of 400
    assert size_layer(HEIGHTS, 420) == 2
    assert size_layer(HEIGHTS, 2160) == 2
    assert size_layer(HEIGHTS, 0) == 0  # not shown (a hidden page)
    assert size_layer(HEIGHTS, None) == 2  # not reported: the best


def test_the_speaker_first_then_large_tiles() -> None:
    assert choose(HEIGHTS, 700, speaking=True) == Choice(2, SPEAKER_PRIORITY)
    assert choose(HEIGHTS, 300, speaking=True) == Choice(1, SPEAKER_PRIORITY)
    assert choose(HEIGHTS, 700, speaking=False) == Choice(2, LARGE_PRIORITY)
    assert choose(HEIGHTS, None, speaking=False) == Choice(2, LARGE_PRIORITY)
    assert choose(HEIGHTS, 300, speaking=False) == Choice(1, OTHER_PRIORITY)
    # A speaker nobody looks at gets nothing extra.
    assert choose(HEIGHTS, 0, speaking=True) == Choice(0, OTHER_PRIORITY)
    assert SPEAKER_PRIORITY > LARGE_PRIORITY > OTHER_PRIORITY


def test_a_drop_holds_the_layers_above_off_doubling_while_it_repeats() -> None:
    first = held_after_drop(None, 1, now=100.0)
    assert (first.ceiling, first.until, first.span) == (1, 100.0 + HOLD_FIRST, HOLD_FIRST)
    # It failed again soon after the hold ended: twice as long, never past HOLD_MAX.
    again = held_after_drop(first, 0, now=first.until + 5)
    assert (again.ceiling, again.span) == (0, 2 * HOLD_FIRST)
    spans = [again.span]
    for _ in range(5):
        again = held_after_drop(again, 1, now=again.until + 1)
        spans.append(again.span)
    assert spans[-1] == HOLD_MAX and spans == sorted(spans)
    # A drop long after the last hold ended starts over; no layer at all holds at 0.
    fresh = held_after_drop(again, None, now=again.until + HOLD_RESET + 1)
    assert (fresh.ceiling, fresh.span) == (0, HOLD_FIRST)


def test_a_held_ceiling_caps_the_tile_choice_until_it_ends() -> None:
    heights = [180, 360, 720]
    assert choose(heights, 700, speaking=False, held=1).spatial_layer == 1
    assert choose(heights, 300, speaking=False, held=2).spatial_layer == 1  # tile is lower
    state = LayerState()
    state.holds["c1"] = Hold(0, until=50.0, span=6.0)
    assert state.ceiling_held("c1", now=49.9) == 0
    assert state.ceiling_held("c1", now=50.0) is None
    assert state.ceiling_held("c2", now=0.0) is None
    state.forget("c1")
    assert "c1" not in state.holds
