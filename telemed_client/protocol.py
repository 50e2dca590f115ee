"""The signaling protocol as the Python client speaks it: error acks and the
transport options a ``createTransport`` ack gives pymediasoup."""

from __future__ import annotations

from typing import Any

from pymediasoup.models.transport import DtlsParameters, IceCandidate, IceParameters

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
