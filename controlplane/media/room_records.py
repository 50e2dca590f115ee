"""The records of live room state as stored in Redis (see room_state).

They keep the stored field names (camelCase, ``peerId`` as on the wire).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RoomRecord:
    roomId: str
    nodeId: str
    routerId: str
    callType: str
    createdAt: float
    workerPid: int = 0


@dataclass(frozen=True)
class ParticipantRecord:
    """``sid`` is empty while the participant is disconnected (since
    ``disconnectedAt``) and may resume; ``epoch`` counts its connections and
    ``resumeHash`` is the SHA-256 of its current resume credential;
    ``resumeWindow`` is the window it was promised (whichever instance serves it)."""

    peerId: str
    role: str
    displayName: str
    sid: str
    instance: str
    joinedAt: float
    epoch: int = 0
    resumeHash: str = ""
    disconnectedAt: float = 0.0
    resumeWindow: float = 0.0

    @classmethod
    def from_stored(cls, raw: dict[str, str]) -> ParticipantRecord:
        return cls(
            peerId=raw["peerId"],
            role=raw["role"],
            displayName=raw["displayName"],
            sid=raw.get("sid", ""),
            instance=raw.get("instance", ""),
            joinedAt=float(raw["joinedAt"]),
            epoch=int(raw.get("epoch") or 0),
            resumeHash=raw.get("resumeHash", ""),
            disconnectedAt=float(raw.get("disconnectedAt") or 0.0),
            resumeWindow=float(raw.get("resumeWindow") or 0.0),
        )


@dataclass(frozen=True)
class ProducerRecord:
    producerId: str
    peerId: str
    kind: str
    source: str
    paused: bool

    @classmethod
    def from_stored(cls, producer_id: str, peer_id: str, body: str) -> ProducerRecord:
        """From its entry in the participant's producers hash (JSON)."""
        data = json.loads(body)
        return cls(producer_id, peer_id, data["kind"], data["source"], bool(data["paused"]))


def producer_payload(record: ProducerRecord) -> dict[str, Any]:
    """A producer as the signaling protocol describes it."""
    return {
        "peerId": record.peerId,
        "producerId": record.producerId,
        "kind": record.kind,
        "source": record.source,
        "paused": record.paused,
    }


@dataclass(frozen=True)
class ConsumerRecord:
    consumerId: str
    peerId: str
    producerId: str
    kind: str
    paused: bool
    transportId: str = ""  # the receive transport it is on ("": recorded before it was kept)
    layered: bool = False  # of a simulcast producer

    def stored(self) -> str:
        """Its value in the participant's consumers hash."""
        return json.dumps(
            {
                "producerId": self.producerId,
                "kind": self.kind,
                "paused": self.paused,
                "transportId": self.transportId,
                "layered": self.layered,
            }
        )

    @classmethod
    def from_stored(cls, consumer_id: str, peer_id: str, body: str) -> ConsumerRecord:
        data = json.loads(body)
        return cls(
            consumerId=consumer_id,
            peerId=peer_id,
            producerId=data["producerId"],
            kind=data["kind"],
            paused=bool(data["paused"]),
            transportId=str(data.get("transportId", "")),
            layered=bool(data.get("layered", False)),
        )
