"""One RPC link per SFU node and control plane: requests that find no live link at
the same moment (the first ones, or after a blip) share the one the first of them
makes.  Two live links would deliver every notification of the node twice (seen
as each activeSpeaker notice arriving twice after an SFU link was cut)."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.placement.registry import SfuRegistry
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_concurrent_requests_share_one_link_to_a_node(stack: Stack, redis) -> None:
    registry = SfuRegistry(redis, stack.sfu_secret, timeout=10)
    try:
        node = (await registry.live_nodes())[0].id
        clients = await asyncio.gather(*(registry.client(node) for _ in range(10)))
        assert len({id(client) for client in clients}) == 1
        assert clients[0].connected
        # After the link drops, the next burst again makes exactly one new link.
        await clients[0].close()
        again = await asyncio.gather(*(registry.client(node) for _ in range(10)))
        assert len({id(client) for client in again}) == 1 and again[0] is not clients[0]
    finally:
        await registry.close()
