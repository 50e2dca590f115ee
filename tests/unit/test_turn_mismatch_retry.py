"""telemed_client.network: a TURN allocation refused with 437 (the server still
holds one for this client port) is asked again from a new socket; any other
refusal, or a third 437, is the caller's (aioice then has no relay candidate).
The real case runs in tests/integration/test_turn_relay.py through coturn."""

from __future__ import annotations

from typing import Any

import aioice.stun
import aioice.turn
import pytest

from telemed_client import network


def refusal(code: int) -> aioice.stun.TransactionFailed:
    response = aioice.stun.Message(
        message_method=aioice.stun.Method.ALLOCATE, message_class=aioice.stun.Class.ERROR
    )
    response.attributes["ERROR-CODE"] = (code, "refused")
    return aioice.stun.TransactionFailed(response)


def attempts(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def allocate(*_args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(network, "_original_create_turn_endpoint", allocate)
    return calls


def test_aioice_allocates_through_the_retrying_endpoint() -> None:
    assert aioice.turn.create_turn_endpoint is network._turn_endpoint_from_a_new_port


async def test_a_mismatch_is_asked_again_until_it_is_granted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = attempts(monkeypatch, [refusal(437), refusal(437), ("transport", "protocol")])
    got = await aioice.turn.create_turn_endpoint(object, server_addr=("127.0.0.1", 3478))
    assert got == ("transport", "protocol")
    assert len(calls) == 3 and all(c["server_addr"] == ("127.0.0.1", 3478) for c in calls)


@pytest.mark.parametrize(
    ("outcomes", "tries"),
    [([refusal(401)], 1), ([refusal(486)], 1), ([refusal(437)] * 3, 3)],
)
async def test_other_refusals_and_a_third_mismatch_are_raised(
    monkeypatch: pytest.MonkeyPatch, outcomes: list[Any], tries: int
) -> None:
    calls = attempts(monkeypatch, outcomes)
    with pytest.raises(aioice.stun.TransactionFailed):
        await aioice.turn.create_turn_endpoint(object, server_addr=("127.0.0.1", 3478))
    assert len(calls) == tries
