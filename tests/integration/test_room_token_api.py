"""A room token on the REST API (the page's console, issue 13): it reaches its own
consultation's session only, on the few endpoints that take one (clinical records,
end), with the rules of its role; anywhere else it is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Stack
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


async def room_token(api: Api, session: dict, subject: str, role: str) -> str:
    issued = await api.call(
        "POST", f"session/{session['sessionId']}/room-token", api.token(subject, role)
    )
    assert issued.status == 200, issued.body
    return str(issued.body["token"])


async def test_a_room_token_writes_and_ends_its_own_session_only(stack: Stack, api: Api) -> None:
    session, physician, patient = await api.active_session()
    other, other_physician, _ = await api.active_session()
    mine = await room_token(api, session, physician, "physician")

    note = await api.call(
        "POST", "notes", mine, {"sessionId": session["sessionId"], "text": "Dor lombar há 3 dias."}
    )
    assert note.status == 201, note.body
    read = await api.call("GET", f"session/{session['sessionId']}/records", mine)
    assert [r["text"] for r in read.body["records"]] == ["Dor lombar há 3 dias."]

    # Another session, even of the same physician's clinic: not found with this token.
    elsewhere = await api.call(
        "POST", "notes", mine, {"sessionId": other["sessionId"], "text": "x"}
    )
    assert (elsewhere.status, elsewhere.code) == (404, "NOT_FOUND")
    # Endpoints that take no room token refuse it.
    for method, path in (("GET", f"session/{session['sessionId']}"), ("GET", f"consent/{patient}")):
        refused = await api.call(method, path, mine)
        assert (refused.status, refused.code) == (401, "UNAUTHORIZED"), path
    # The patient's room token may not write or end.
    theirs = await room_token(api, session, patient, "patient")
    refused = await api.call(
        "POST", "notes", theirs, {"sessionId": session["sessionId"], "text": "x"}
    )
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    refused = await api.call("POST", "session/end", theirs, {"sessionId": session["sessionId"]})
    assert (refused.status, refused.code) == (403, "FORBIDDEN")

    ended = await api.call("POST", "session/end", mine, {"sessionId": session["sessionId"]})
    assert ended.status == 200 and ended.body["status"] == "ended"
    # The other session is untouched.
    still = await api.call(
        "GET", f"session/{other['sessionId']}", api.token(other_physician, "physician")
    )
    assert still.body["status"] == "active"
