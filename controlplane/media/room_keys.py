"""Redis key names of a room's live state (the layout is in room_state.py).  Keys
of one room share the hash tag ``{roomId}``, so they stay on one Redis Cluster
slot."""

from __future__ import annotations


def room_key(room_id: str) -> str:
    return f"telemed:room:{{{room_id}}}"


def participants_key(room_id: str) -> str:
    return f"{room_key(room_id)}:peers"


def participant_key(room_id: str, participant_id: str) -> str:
    return f"{room_key(room_id)}:peer:{participant_id}"


def producers_key(room_id: str, participant_id: str) -> str:
    return f"{participant_key(room_id, participant_id)}:producers"


def waiting_key(room_id: str) -> str:
    """The participants in the waiting room (media/admission.py keeps it)."""
    return f"{room_key(room_id)}:waiting"


def admission_key(room_id: str) -> str:
    """Each participant's admission (media/admission.py)."""
    return f"{room_key(room_id)}:admission"


def banned_key(room_id: str) -> str:
    """Room token ids that may not join again (media/admission.py)."""
    return f"{room_key(room_id)}:banned"


def room_producers_key(room_id: str) -> str:
    return f"{room_key(room_id)}:producers"


def node_rooms_key(node_id: str) -> str:
    return f"telemed:sfu:node:{node_id}:rooms"


def router_key(router_id: str) -> str:
    return f"telemed:router:{router_id}"
