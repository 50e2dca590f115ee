"""`telemed loadtest`: the consultations a load test needs, on any deployment.

Run with the deployment's environment (DATABASE_URL and TELEMED_JWT_SECRET, as
`telemed links`): it writes one active session per room straight into PostgreSQL
(clinic ``loadtest``, created by ``telemed-loadtest``, physician ``loadtest-dr``,
patient ``loadtest-pt``: never a real person's record), mints each participant's
room token, runs telemed_client.loadtest against the control plane's URL, and
ends the sessions afterwards (they stay, ended, beside their audit rows)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from typing import Any

import asyncpg

from controlplane.auth import TokenService
from controlplane.devstack.seeding import active_sessions_sql
from telemed_client.loadtest import Report, Seat, run_load

CREATED_BY = "telemed-loadtest"
MAX_PARTICIPANTS = 12


def members_of(participants: int) -> list[tuple[str, str]]:
    """(id prefix, role) of a room's participants: a physician, a patient, nurses."""
    if not 1 <= participants <= MAX_PARTICIPANTS:
        raise ValueError(f"participants must be 1 to {MAX_PARTICIPANTS}")
    base = [("dr", "physician"), ("pt", "patient")]
    nurses = [(f"nurse{i}", "nurse") for i in range(1, participants - 1)]
    return (base + nurses)[:participants]


def token(tokens: TokenService, room: str, prefix: str, role: str, call_type: str) -> str:
    return tokens.mint(
        participant_id=f"{prefix}-{room}", role=role, room_id=room, call_type=call_type
    )


async def run_loadtest(
    database_url: str,
    tokens: TokenService,
    url: str,
    *,
    rooms: int,
    participants: int,
    seconds: float,
    media: bool,
    wave: int = 50,
    call_type: str = "consultation",
    burst: bool = False,
) -> Report:
    if rooms < 1:
        raise ValueError("rooms must be at least 1")
    members = members_of(participants)
    names = [f"loadtest-{secrets.token_hex(6)}" for _ in range(rooms)]
    sql = active_sessions_sql(
        names,
        members,
        session_type=call_type,
        clinic="loadtest",
        created_by=CREATED_BY,
        physician="loadtest-dr",
        patient="loadtest-pt",
    )
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(sql)
        seats = [
            [
                Seat(room, f"{prefix}-{room}", role, token(tokens, room, prefix, role, call_type))
                for prefix, role in members
            ]
            for room in names
        ]
        return await run_load(url, seats, seconds=seconds, media=media, wave=wave, burst=burst)
    finally:
        await connection.execute(
            "UPDATE sessions SET status = 'ended', ended_at = now() "
            "WHERE room_id = ANY($1::text[]) AND created_by = $2 AND status = 'active'",
            names,
            CREATED_BY,
        )
        await connection.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the control plane (default TELEMED_PUBLIC_URL)")
    parser.add_argument("--rooms", type=int, default=5, help="consultations (default 5)")
    parser.add_argument("--participants", type=int, default=2, help="per consultation, 1-12")
    parser.add_argument("--seconds", type=float, default=30, help="in the call (default 30)")
    parser.add_argument("--wave", type=int, default=50, help="participants joining at once")
    parser.add_argument("--call-type", default="consultation")
    parser.add_argument(
        "--signaling-only", action="store_true", help="Socket.IO clients only, no media"
    )
    parser.add_argument(
        "--burst", action="store_true", help="at the end, everyone sends one event at once"
    )
    parser.add_argument("--json", action="store_true")


def command(args: argparse.Namespace, env: dict[str, str], tokens: TokenService | None) -> int:
    """Exit code 0 when nothing failed, 1 when an error was counted, 2 on bad use."""
    if tokens is None or not env.get("DATABASE_URL"):
        print("telemed loadtest: needs DATABASE_URL and TELEMED_JWT_SECRET", file=sys.stderr)
        return 2
    url = (args.url or env.get("TELEMED_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/")
    try:
        report = asyncio.run(
            run_loadtest(
                env["DATABASE_URL"],
                tokens,
                url,
                rooms=args.rooms,
                participants=args.participants,
                seconds=args.seconds,
                media=not args.signaling_only,
                wave=args.wave,
                call_type=args.call_type,
                burst=args.burst,
            )
        )
    except (ValueError, OSError, asyncpg.PostgresError) as exc:
        print(f"telemed loadtest: {exc}", file=sys.stderr)
        return 2
    output: Any = json.dumps(report.as_dict()) if args.json else "\n".join(report.lines())
    print(output)
    return 1 if report.errors else 0
