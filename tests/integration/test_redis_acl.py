"""Redis runs with an ACL user and the default user off (make run, the tests, and
deploy/ alike): without the password nothing reads or writes the live state."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_redis_refuses_clients_without_the_acl_users_password(stack: Stack) -> None:
    url = urlparse(stack.redis_url)
    assert url.username == "telemed" and url.password
    for attempt in (
        aioredis.Redis(host="127.0.0.1", port=url.port),
        aioredis.Redis(host="127.0.0.1", port=url.port, username="telemed", password="wrong"),
        aioredis.Redis(host="127.0.0.1", port=url.port, username="default", password=""),
    ):
        with pytest.raises((AuthenticationError, ResponseError)):
            await attempt.keys("telemed:*")
        await attempt.aclose()
    allowed = aioredis.from_url(stack.redis_url)
    assert await allowed.ping() is True
    await allowed.aclose()
