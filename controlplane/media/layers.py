"""Simulcast layers: what the server asks the SFU to give each subscriber of a
camera sent in three layers.

Two things per video consumer, set on the SFU (layer_control.py):

- a ceiling, the smallest layer at least as tall as the tile the page shows it in
  (a thumbnail never costs a 720 p stream; a hidden page gets the smallest);
- a priority: the active speaker's camera first, then cameras shown large, then
  the rest.

Between the two, the SFU decides: mediasoup estimates each subscriber's bandwidth
(transport-cc from browsers, REMB from others), first gives every consumer its
lowest layer, then hands out what is left layer by layer, more to higher
priorities, never above a ceiling.  Under a bandwidth cap the layers go down
there, packet by packet, and come back when the estimate recovers.  (A ceiling
computed here from the estimate would be wrong: mediasoup probes for bandwidth only
up to what its consumers could use, so a ceiling at what fits now would keep the
estimate from ever growing.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from controlplane.media.profiles import MediaProfile

# A layer a tenth shorter than its tile still fills it well enough.
SIZE_SLACK = 0.9
# mediasoup priorities (1-255): how many layer steps a consumer takes per round.
SPEAKER_PRIORITY = 3
LARGE_PRIORITY = 2
OTHER_PRIORITY = 1


@dataclass(frozen=True)
class Choice:
    spatial_layer: int
    priority: int


@dataclass
class LayerState:
    """One subscriber's tile sizes and the choices last set on the SFU."""

    tile_heights: dict[str, int] = field(default_factory=dict)  # consumer id -> pixels
    chosen: dict[str, Choice] = field(default_factory=dict)  # consumer id -> choice
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def layer_heights(profile: MediaProfile) -> list[int]:
    """The height of each layer of a camera captured at the profile's size."""
    return [
        profile.height // encoding["scaleResolutionDownBy"]
        for encoding in profile.simulcast_encodings()
    ]


def size_layer(heights: list[int], tile_height: int | None) -> int:
    """The smallest layer that fills a tile ``tile_height`` device pixels tall
    (0: not shown; None: not reported, so the best)."""
    top = len(heights) - 1
    if tile_height is None:
        return top
    if tile_height <= 0:
        return 0
    for index, height in enumerate(heights):
        if height >= tile_height * SIZE_SLACK:
            return index
    return top


def choose(heights: list[int], tile_height: int | None, speaking: bool) -> Choice:
    layer = size_layer(heights, tile_height)
    if speaking and layer > 0:
        priority = SPEAKER_PRIORITY
    elif layer == len(heights) - 1:
        priority = LARGE_PRIORITY
    else:
        priority = OTHER_PRIORITY
    return Choice(layer, priority)
