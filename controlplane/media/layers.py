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

One correction on top: when the SFU moves a consumer below its ceiling (the
subscriber's link could not carry the layer), the layers above stay out of reach
for a hold time (6 s, doubling while it keeps happening, at most 30 s), then the
ceiling comes back and mediasoup probes again.  Without it, a capped link probes
up into the layer it cannot carry every few seconds and the picture freezes on
each try.
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


HOLD_FIRST = 6.0  # seconds a layer the link could not carry stays out of reach
HOLD_MAX = 30.0
HOLD_RESET = 60.0  # a drop this long after the last hold ended starts again at HOLD_FIRST


@dataclass(frozen=True)
class Hold:
    """Layers above ``ceiling`` are out of reach until ``until`` (monotonic s)."""

    ceiling: int
    until: float
    span: float


def held_after_drop(previous: Hold | None, received: int | None, now: float) -> Hold:
    """The hold after the SFU moved a consumer down to ``received`` (None: to no
    layer at all) for want of bandwidth."""
    span = HOLD_FIRST
    if previous is not None and now - previous.until < HOLD_RESET:
        span = min(HOLD_MAX, previous.span * 2)
    return Hold(max(received or 0, 0), now + span, span)


@dataclass
class LayerState:
    """One subscriber's tile sizes, the layers it receives, the holds, and the
    choices last set on the SFU."""

    tile_heights: dict[str, int] = field(default_factory=dict)  # consumer id -> pixels
    chosen: dict[str, Choice] = field(default_factory=dict)  # consumer id -> choice
    received: dict[str, int | None] = field(default_factory=dict)  # consumer id -> layer
    holds: dict[str, Hold] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def forget(self, consumer_id: str) -> None:
        for per_consumer in (self.tile_heights, self.chosen, self.received, self.holds):
            per_consumer.pop(consumer_id, None)

    def ceiling_held(self, consumer_id: str, now: float) -> int | None:
        hold = self.holds.get(consumer_id)
        return hold.ceiling if hold is not None and now < hold.until else None


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


def choose(
    heights: list[int], tile_height: int | None, speaking: bool, held: int | None = None
) -> Choice:
    """``held``: a ceiling the link's recent drop imposes (see Hold)."""
    layer = size_layer(heights, tile_height)
    if held is not None:
        layer = min(layer, held)
    if speaking and layer > 0:
        priority = SPEAKER_PRIORITY
    elif layer == len(heights) - 1:
        priority = LARGE_PRIORITY
    else:
        priority = OTHER_PRIORITY
    return Choice(layer, priority)
