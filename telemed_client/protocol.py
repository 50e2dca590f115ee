"""The signaling protocol as the Python client speaks it: error acks, the
transport options a ``createTransport`` ack gives pymediasoup, and a transport's
DTLS parameters sent with ``connectTransport``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymediasoup.models.transport import DtlsParameters, IceCandidate, IceParameters
from pymediasoup.transport import Transport

from telemed_client.ice_policy import IcePolicy, ice_servers_from_ack


class SignalingError(Exception):
    """An error acknowledgement: ``code`` is one of the documented error codes."""

    def __init__(self, event: str, code: str, message: str) -> None:
        super().__init__(f"{event}: {code}: {message}")
        self.event = event
        self.code = code
        self.message = message


def transport_options(info: dict[str, Any], policy: IcePolicy = "all") -> dict[str, Any]:
    """pymediasoup transport options from a ``createTransport`` ack (its TURN
    servers, and ``policy`` "relay" to use nothing else)."""
    return {
        "id": info["id"],
        "iceParameters": IceParameters(**info["iceParameters"]),
        "iceCandidates": [IceCandidate(**c) for c in info["iceCandidates"]],
        "dtlsParameters": DtlsParameters(**info["dtlsParameters"]),
        "sctpParameters": None,
        # Never None: aiortc would add a public STUN server.
        "iceServers": ice_servers_from_ack(info),
        "iceTransportPolicy": policy,
    }


def connect_with_dtls(
    transport: Transport,
    request: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
    errors: list[str],
) -> None:
    """On the transport's ``connect`` (its first produce or consume), send
    ``connectTransport`` with its DTLS parameters; a failure goes to ``errors``
    (pymediasoup does not pass it on)."""

    async def on_connect(dtls: DtlsParameters) -> None:
        try:
            await request(
                "connectTransport",
                {"transportId": transport.id, "dtlsParameters": dtls.model_dump(exclude_none=True)},
            )
        except Exception as exc:
            errors.append(f"connectTransport: {exc}")

    transport.on("connect", on_connect)
