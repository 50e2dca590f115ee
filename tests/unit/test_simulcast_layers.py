"""The server's choice of simulcast layer per consumer (controlplane/media/layers.py)."""

from __future__ import annotations

from controlplane.media.layers import Tile, choose, profile_layers, size_layer
from controlplane.media.profiles import profile_for

# Group therapy: 1280x720 capture, 3 Mbps top -> 180 p / 375 kbps, 360 p / 1 Mbps, 720 p / 3 Mbps.
LAYERS = profile_layers(profile_for("group_therapy"))


def test_the_layers_follow_the_profile() -> None:
    assert [(layer.height, layer.bitrate) for layer in LAYERS] == [
        (180, 375_000),
        (360, 1_000_000),
        (720, 3_000_000),
    ]
    encodings = profile_for("consultation").to_client()["simulcastEncodings"]
    assert [e["scaleResolutionDownBy"] for e in encodings] == [4, 2, 1]


def test_the_smallest_layer_that_fills_the_tile() -> None:
    assert size_layer(LAYERS, 120) == 0
    assert size_layer(LAYERS, 190) == 0  # 180 is within a tenth of 190
    assert size_layer(LAYERS, 240) == 1
    assert size_layer(LAYERS, 400) == 1  # 360 is within a tenth of 400
    assert size_layer(LAYERS, 420) == 2
    assert size_layer(LAYERS, 2160) == 2
    assert size_layer(LAYERS, 0) == 0  # not shown
    assert size_layer(LAYERS, None) == 2  # not reported: the best


def test_without_an_estimate_tile_sizes_alone_decide() -> None:
    tiles = [Tile("a", 700), Tile("b", 240), Tile("c", None)]
    assert choose(LAYERS, tiles, None, {}) == {"a": 2, "b": 1, "c": 2}


def test_under_a_cap_the_smaller_tiles_go_down_first_and_the_speaker_last() -> None:
    tiles = [Tile("big", 700), Tile("small", 500), Tile("speaker", 600, speaking=True)]
    # All three want 720 p (9 Mbps).  What fits 2 Mbps: the speaker's 360 p and 180 p
    # for the others; each ceiling is one layer above that.
    assert choose(LAYERS, tiles, 2_000_000, {}) == {"big": 1, "small": 1, "speaker": 2}
    # 4.5 Mbps fits the speaker's 720 p, 360 p for the big tile, 180 p for the small.
    assert choose(LAYERS, tiles, 4_500_000, {}) == {"big": 2, "small": 1, "speaker": 2}
    # Nothing fits: one layer above the bottom, so the estimate may still grow.
    assert choose(LAYERS, tiles, 100_000, {}) == {"big": 1, "small": 1, "speaker": 1}
    # Plenty: the tile sizes alone.
    assert choose(LAYERS, tiles, 20_000_000, {}) == {"big": 2, "small": 2, "speaker": 2}


def test_a_layer_goes_up_again_only_with_headroom() -> None:
    tiles = [Tile("a", 700), Tile("b", 600)]
    # 1.5 Mbps fits 360 p + 180 p (the smaller tile b lower): ceilings 720 p, 360 p.
    assert choose(LAYERS, tiles, 1_500_000, {}) == {"a": 2, "b": 1}
    # 2.1 Mbps would fit 360 p for both, but not with a fifth to spare: b stays.
    assert choose(LAYERS, tiles, 2_100_000, {"a": 2, "b": 1}) == {"a": 2, "b": 1}
    assert choose(LAYERS, tiles, 2_600_000, {"a": 2, "b": 1}) == {"a": 2, "b": 2}
    # Down at once, whatever the headroom.
    assert choose(LAYERS, tiles, 700_000, {"a": 2, "b": 2}) == {"a": 1, "b": 1}
    # A smaller tile lowers it even with bandwidth to spare.
    assert choose(LAYERS, [Tile("a", 150)], 10_000_000, {"a": 2}) == {"a": 0}
