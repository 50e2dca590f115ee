"""TURN relays for the Python client: the ``iceServers`` of a transport ack as
aiortc objects, and an aiortc handler that honours ``iceTransportPolicy``.

pymediasoup 1.5.0's ``AiortcHandler`` builds the peer connection with
``RTCConfiguration(iceServers=...)`` and drops the policy it is given; aiortc
1.16 reads the policy from that configuration when it gathers candidates (at
the first ``setLocalDescription``), so setting it right after the handler is
set up makes a relay-only transport."""

from __future__ import annotations

from typing import Any, Literal

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from pymediasoup import AiortcHandler
from pymediasoup.transport import Transport

from telemed_client.network import ice_connections, set_send_delay

IcePolicy = Literal["all", "relay"]


def ice_servers_from_ack(info: dict[str, Any]) -> list[RTCIceServer]:
    servers: list[RTCIceServer] = []
    for server in info.get("iceServers") or []:
        urls = server["urls"]
        servers.append(
            RTCIceServer(
                urls=[urls] if isinstance(urls, str) else list(urls),
                username=server.get("username"),
                credential=server.get("credential"),
            )
        )
    return servers


class PolicyAiortcHandler(AiortcHandler):  # type: ignore[misc]
    def run(self, **options: Any) -> None:
        super().run(**options)
        policy = options.get("iceTransportPolicy") or "all"
        # aiortc keeps its configuration private and has no setConfiguration().
        configuration: RTCConfiguration = self.pc._RTCPeerConnection__configuration
        configuration.iceTransportPolicy = RTCIceTransportPolicy(policy)


def candidate_types(peer_connections: list[Any]) -> dict[str, set[str]]:
    """Types of the local ICE candidates gathered, and of the local candidate of
    each nominated (in use) pair, over these aiortc peer connections."""
    gathered: set[str] = set()
    selected: set[str] = set()
    for connection in ice_connections(peer_connections):
        gathered.update(candidate.type for candidate in connection.local_candidates)
        for pair in getattr(connection, "_nominated", {}).values():
            selected.add(pair.local_candidate.type)
    return {"gathered": gathered, "selected": selected}


class IceControls:
    """What a peer can see and change of its ICE connections (a MediaPeer part)."""

    send_transport: Transport | None
    recv_transport: Transport | None

    def set_network_delay(self, seconds: float) -> int:
        """Delay every media datagram this peer sends by ``seconds`` (0 removes it);
        returns how many ICE connections it applies to."""
        connections = ice_connections(self._peer_connections())
        set_send_delay(connections, seconds)
        return len(connections)

    def ice_candidate_types(self) -> dict[str, set[str]]:
        """Local ICE candidate types: ``gathered`` and ``selected`` (of the pairs in use)."""
        return candidate_types(self._peer_connections())

    def peer_connections(self) -> list[Any]:
        """The aiortc RTCPeerConnections of the send and receive transports."""
        return self._peer_connections()

    def _peer_connections(self) -> list[Any]:
        return [t.handler._pc for t in (self.send_transport, self.recv_transport) if t]
