"""Socket.IO packets as this server writes them: JSON by orjson, and no search
for binary parts.

python-socketio's default packet walks every outgoing payload recursively to
find bytes (to send them as binary attachments) and encodes with the standard
``json`` module.  No event of this protocol carries bytes (docs/signaling.md), and
for an ack holding a router's RTP capabilities (about 5 KiB) the two cost about
0.35 ms of CPU, most of what a cheap event costs the server.  Incoming packets
are decoded as before (a client's binary attachments still reassemble).  Python's
int parsing is quadratic in the digits, so engineio's own loader refuses integers
over 100 digits: orjson reads a number past 64 bits as a float and refuses one too
long for a double, so no big integer is ever parsed (the schemas then check types
and ranges).
"""

from __future__ import annotations

from typing import Any

import orjson
from socketio import packet


def dumps(obj: Any, **_options: Any) -> str:
    """``json.dumps`` for python-socketio (which asks for compact separators:
    orjson's only form). Non-string keys are written as strings, as json does."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(text: str | bytes, **_options: Any) -> Any:
    return orjson.loads(text)


class JsonModule:
    """The ``json`` module interface python-socketio calls."""

    dumps = staticmethod(dumps)
    loads = staticmethod(loads)


class WirePacket(packet.Packet):  # type: ignore[misc]
    uses_binary_events = False
    json = JsonModule
