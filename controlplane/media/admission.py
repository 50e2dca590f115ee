"""The waiting room's state (issue 13): each participant's admission to a
consultation, a server-side state machine kept in Redis.

States: ``waiting`` -> ``admitted`` -> ``in_call`` -> ``left``, and ``denied``,
``removed``.  Clinicians (physician, nurse, specialist) are in the call as they
join; companions and interpreters wait until a clinician of the session admits
them, and so do patients in the session types the policy names
(``TELEMED_WAITING_ROOM_TYPES``: by default all but emergencies, whose patient
joins directly).  Once admitted, a
participant who leaves or drops comes back straight in: admission holds for the
session.  "Remove" sends someone back to waiting, or out: out bans the room token
they came with (its id), so the same token cannot walk back in; so does a denial.

Every change bumps the participant's version (clients drop older news); asking
for the state one is already in changes nothing (idempotent).  The keys are the
consultation room's (one room per session) and expire a day after the last
change; they outlive the room itself, which closes when its last participant
leaves, so a ban holds as long as the session can be joined.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from controlplane.auth import CLINICIAN_ROLES
from controlplane.media.room_keys import admission_key, banned_key, waiting_key
from controlplane.redis_text import optional_text, text_map
from schemas.errors import ApiError, ErrorCode

ADMISSION_TTL = 24 * 3600
WAITING, ADMITTED, IN_CALL, LEFT, DENIED, REMOVED = (
    "waiting",
    "admitted",
    "in_call",
    "left",
    "denied",
    "removed",
)
# What a clinician may decide, and the state each decision leads to from each state.
DECISIONS: dict[str, dict[str, str]] = {
    "admit": {WAITING: ADMITTED, ADMITTED: ADMITTED, IN_CALL: IN_CALL, LEFT: LEFT},
    "deny": {WAITING: DENIED, DENIED: DENIED},
    "toWaiting": {ADMITTED: WAITING, IN_CALL: WAITING, WAITING: WAITING},
    "remove": {WAITING: REMOVED, ADMITTED: REMOVED, IN_CALL: REMOVED, LEFT: REMOVED},
}
DECISIONS["remove"][REMOVED] = REMOVED


@dataclass(frozen=True)
class Admission:
    peerId: str
    role: str
    displayName: str
    state: str
    version: int
    since: float
    by: str  # who made the last change ("" on arrival, "policy", a clinician's id)
    tokenId: str  # the room token it came with (banned on removal)
    admittedBefore: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "peerId": self.peerId,
            "role": self.role,
            "displayName": self.displayName,
            "state": self.state,
            "version": self.version,
            "since": self.since,
        }


def on_arrival(
    previous: Admission | None, role: str, call_type: str, patients_wait: frozenset[str]
) -> tuple[str, str]:
    """The state (and by what) of a participant who joins or comes back;
    ``patients_wait``: the call types whose patient waits."""
    if role in CLINICIAN_ROLES:
        return IN_CALL, ""
    was_in = previous is not None and previous.admittedBefore
    if was_in and previous is not None and previous.state in (ADMITTED, IN_CALL, LEFT):
        return IN_CALL, previous.by
    if role == "patient" and call_type not in patients_wait:
        return IN_CALL, "policy"
    if role not in ("patient", "companion", "interpreter"):
        return IN_CALL, ""  # staff (coordinator, admin) joining a room
    return WAITING, ""


def decided(current: Admission, decision: str) -> str:
    """The state ``decision`` leads to (CONFLICT when it cannot apply)."""
    target = DECISIONS[decision].get(current.state)
    if target is None:
        raise ApiError(
            ErrorCode.CONFLICT, f"cannot {decision} a participant who is {current.state}"
        )
    return target


def advanced(current: Admission, state: str, by: str) -> Admission:
    """``current`` moved to ``state`` (the same record when it is there already)."""
    if state == current.state:
        return current
    return replace(
        current,
        state=state,
        version=current.version + 1,
        since=time.time(),
        by=by,
        admittedBefore=current.admittedBefore or state in (ADMITTED, IN_CALL),
    )


# Compare-and-set of one participant's admission (KEYS: admission hash, waiting
# set, banned set; ARGV: participant id, the stored JSON it was computed from
# ("" if none), the new JSON ("" to delete), "1" if waiting, a token id to ban
# ("" if none), TTL).  0 when the stored value is no longer the one read.
_CHANGE_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if raw ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
if ARGV[5] ~= '' then redis.call('SADD', KEYS[3], ARGV[5]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return 1
"""
_CHANGE_ATTEMPTS = 20

# Given the current admission (None: none yet), the new one, None to delete it, or
# the same object to change nothing.
Step = Callable[[Admission | None], Awaitable[Admission | None]]


class AdmissionStore:
    """Every change is a compare-and-set in Redis (``change``): one round trip to
    read, one to write, no lock; a change that lost a race is computed again from
    what won."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._change = redis.register_script(_CHANGE_SCRIPT)

    async def change(
        self, room_id: str, participant_id: str, step: Step, *, token_id: str = ""
    ) -> tuple[Admission | None, Admission | None]:
        """Read-modify-write of one participant's admission, atomic against every
        other change of it on any instance; (before, after).  ``token_id``: the
        room token of an arrival, refused (FORBIDDEN) if it was banned; read in
        the same round trip."""
        for _ in range(_CHANGE_ATTEMPTS):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hget(admission_key(room_id), participant_id)
            pipe.sismember(banned_key(room_id), token_id or "-")
            stored, banned = await pipe.execute()
            if token_id and banned:
                raise ApiError(
                    ErrorCode.FORBIDDEN,
                    "you were removed from this consultation; ask for a new link",
                )
            raw = optional_text(stored)
            current = Admission(**json.loads(raw)) if raw else None
            after = await step(current)
            if after is current:
                return current, current
            if await self._put_if(room_id, participant_id, raw or "", after):
                return current, after
        raise ApiError(ErrorCode.CONFLICT, "the admission changed meanwhile; retry")

    async def _put_if(
        self, room_id: str, participant_id: str, expected: str, after: Admission | None
    ) -> bool:
        banned = ""
        if after is not None and after.state in (DENIED, REMOVED):
            banned = after.tokenId
        done = await self._change(
            keys=[admission_key(room_id), waiting_key(room_id), banned_key(room_id)],
            args=[
                participant_id,
                expected,
                json.dumps(asdict(after)) if after is not None else "",
                "1" if after is not None and after.state == WAITING else "0",
                banned,
                ADMISSION_TTL,
            ],
        )
        return bool(done)

    async def get(self, room_id: str, participant_id: str) -> Admission | None:
        raw = optional_text(await self._redis.hget(admission_key(room_id), participant_id))
        return Admission(**json.loads(raw)) if raw else None

    async def all(self, room_id: str) -> list[Admission]:
        raw = text_map(await self._redis.hgetall(admission_key(room_id)))
        return sorted(
            (Admission(**json.loads(body)) for body in raw.values()), key=lambda a: a.since
        )

    async def clear(self, room_id: str) -> None:
        """The session ended: its waiting room goes with it."""
        await self._redis.delete(admission_key(room_id), waiting_key(room_id), banned_key(room_id))
