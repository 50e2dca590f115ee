"""Simulcast layers: which of a camera's three layers each subscriber gets.

Per video consumer of a simulcast producer the server sets a ceiling (mediasoup's
preferred spatial layer): the smallest layer at least as tall as the tile the page
shows it in; lowered while the subscriber's estimated bandwidth cannot carry all
of them (the smallest tiles first, the active speaker last) to one layer above
what fits; raised again only with headroom, so an estimate near a layer's bitrate
does not flip it back and forth.  Below that ceiling mediasoup's own estimator
picks, moment to moment, the layer the link carries.

Pure functions here; layer_control.py applies them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from controlplane.media.profiles import MediaProfile

# What one audio consumer is assumed to need (Opus speech with FEC).
AUDIO_ALLOWANCE = 64_000
# A layer is raised only if everything chosen then fits in this share of the estimate.
UPGRADE_HEADROOM = 0.8
# A layer a tenth shorter than its tile still fills it well enough.
SIZE_SLACK = 0.9


@dataclass(frozen=True)
class Layer:
    height: int  # pixels
    bitrate: int  # bits per second, the layer's maximum


@dataclass(frozen=True)
class Tile:
    """How a subscriber shows one consumer: ``height`` in device pixels (0: not
    visible, None: not reported); ``speaking``: it is the room's active speaker."""

    consumer_id: str
    height: int | None
    speaking: bool = False


@dataclass
class LayerState:
    """One subscriber's inputs and the ceilings last set on the SFU."""

    tile_heights: dict[str, int] = field(default_factory=dict)  # consumer id -> pixels
    bandwidth: float | None = None  # the SFU's estimate towards it, bits per second
    preferred: dict[str, int] = field(default_factory=dict)  # consumer id -> spatial layer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def profile_layers(profile: MediaProfile) -> list[Layer]:
    return [
        Layer(profile.height // encoding["scaleResolutionDownBy"], encoding["maxBitrate"])
        for encoding in profile.simulcast_encodings()
    ]


def size_layer(layers: list[Layer], height: int | None) -> int:
    """The smallest layer that fills a tile ``height`` pixels tall."""
    top = len(layers) - 1
    if height is None:
        return top
    if height <= 0:
        return 0
    for index, layer in enumerate(layers):
        if layer.height >= height * SIZE_SLACK:
            return index
    return top


def fit(
    layers: list[Layer], tiles: list[Tile], wanted: dict[str, int], budget: float
) -> dict[str, int]:
    """Lower layers, one step at a time, until they fit ``budget``: never the
    speaker's while another can go down; the highest first; of equals, the smaller
    tile first."""
    chosen = dict(wanted)
    total = sum(layers[layer].bitrate for layer in chosen.values())
    while total > budget:
        lowerable = [tile for tile in tiles if chosen[tile.consumer_id] > 0]
        if not lowerable:
            break
        tile = min(
            lowerable,
            key=lambda t: (
                t.speaking,
                -chosen[t.consumer_id],
                t.height if t.height is not None else 1 << 30,
            ),
        )
        layer = chosen[tile.consumer_id]
        total -= layers[layer].bitrate - layers[layer - 1].bitrate
        chosen[tile.consumer_id] = layer - 1
    return chosen


def ceilings(
    layers: list[Layer], tiles: list[Tile], wanted: dict[str, int], budget: float
) -> dict[str, int]:
    """What fits ``budget``, plus one layer: mediasoup probes the link up to what
    its consumers could take, so a ceiling at exactly what fits would keep the
    estimate from ever growing; below the ceiling it picks what the link carries."""
    fitted = fit(layers, tiles, wanted, budget)
    return {cid: min(wanted[cid], fitted[cid] + 1) for cid in wanted}


def choose(
    layers: list[Layer], tiles: list[Tile], budget: float | None, current: dict[str, int]
) -> dict[str, int]:
    """Each tile's ceiling.  ``budget``: bits per second the subscriber can take
    for these consumers (None: unknown, tile sizes alone decide); ``current``: the
    ceilings set before."""
    wanted = {tile.consumer_id: size_layer(layers, tile.height) for tile in tiles}
    if budget is None:
        return wanted
    down = ceilings(layers, tiles, wanted, budget)
    up = ceilings(layers, tiles, wanted, budget * UPGRADE_HEADROOM)
    chosen: dict[str, int] = {}
    for tile in tiles:
        before = current.get(tile.consumer_id)
        target = down[tile.consumer_id]
        chosen[tile.consumer_id] = (
            target if before is None or target <= before else max(before, up[tile.consumer_id])
        )
    return chosen
