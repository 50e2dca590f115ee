"""What the server asks the SFU to give a subscriber of a simulcast camera
(controlplane/media/layers.py): a ceiling from the tile size, a priority."""

from __future__ import annotations

from controlplane.media.layers import (
    LARGE_PRIORITY,
    OTHER_PRIORITY,
    SPEAKER_PRIORITY,
    Choice,
    choose,
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
