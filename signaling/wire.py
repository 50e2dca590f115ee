"""Socket.IO packets as this server writes them: JSON by orjson, and no search
for binary parts.

python-socketio's default packet walks every outgoing payload recursively to
find bytes (to send them as binary attachments) and encodes with the standard
``json`` module.  No event of this protocol carries bytes (docs/signaling.md), and
for an ack holding a router's RTP capabilities (3.8 KB) the two cost 0.14-0.24 ms
of CPU against 7-8 us here (bench/signaling_scale.py prints both).  Incoming packets
are decoded as before (a client's binary attachments still reassemble).  orjson
reads a number past 64 bits as a float; what it refuses is handed to engineio's
loader, which refuses integers over 100 digits (Python's int parsing is quadratic
in the digits).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from engineio import json as engineio_json
from socketio import packet


def dumps(obj: Any, **_options: Any) -> str:
    """``json.dumps`` for python-socketio (which asks for compact separators:
    orjson's only form). Non-string keys are written as strings, as json does.
    What orjson will not write (a lone surrogate in a string, an infinite float:
    only a client's own odd input echoed back) is written by json, as before."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(obj, separators=(",", ":"))


def loads(text: str | bytes, **_options: Any) -> Any:
    """What orjson refuses (lone surrogates, ``Infinity``, numbers too long for
    a double) goes to engineio's loader, which decoded every packet before: the
    same input gets the same answer (a result or a validation error) as before."""
    try:
        return orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError
        return engineio_json.loads(text)


class JsonModule:
    """The ``json`` module interface python-socketio calls."""

    dumps = staticmethod(dumps)
    loads = staticmethod(loads)


class WirePacket(packet.Packet):  # type: ignore[misc]
    uses_binary_events = False
    json = JsonModule
