"""`telemed` command line: run the control plane, run the whole system locally,
mint room tokens, inspect live room state."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from controlplane.cli import serve
from controlplane.config import ConfigError
from controlplane.devstack import dev_command
from controlplane.devstack.dev_command import DEV_ENV_FILE

DATA_DIR = Path(os.environ.get("TELEMED_DATA_DIR", Path.cwd() / ".data"))


def settings_env() -> dict[str, str]:
    """The process environment, completed from a running `telemed dev` when unset."""
    env = dict(os.environ)
    dev_file = DATA_DIR / DEV_ENV_FILE
    if dev_file.exists():
        for key, value in json.loads(dev_file.read_text()).items():
            env.setdefault(key, value)
    return env


def cmd_dev(args: argparse.Namespace) -> int:
    return dev_command.run(args)


def _token_service(command: str) -> Any:
    from controlplane.auth import TokenService

    env = settings_env()
    secret = env.get("TELEMED_JWT_SECRET", "")
    if len(secret) < 32:
        print(
            f"telemed {command}: TELEMED_JWT_SECRET is not set and no `telemed dev` is running",
            file=sys.stderr,
        )
        return None
    return TokenService(
        secret,
        env.get("TELEMED_JWT_ISSUER", "telemed"),
        env.get("TELEMED_JWT_AUDIENCE", "telemed-room"),
        int(env.get("TELEMED_ROOM_TOKEN_TTL", str(4 * 3600))),
    )


def cmd_mint_token(args: argparse.Namespace) -> int:
    tokens = _token_service("mint-token")
    if tokens is None:
        return 2
    try:
        token = tokens.mint(
            participant_id=args.participant,
            role=args.role,
            room_id=args.consultation,
            call_type=args.call_type,
            display_name=args.name or "",
            ttl=args.ttl,
        )
    except ValueError as exc:
        print(f"telemed mint-token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_recording(args: argparse.Namespace) -> int:
    """Decrypt a recording to a seekable Matroska file, or wrap recordings' keys
    with the current key (administrators, audited)."""
    import getpass

    from controlplane.clinical.audit import Actor
    from controlplane.clinical.field_crypto import DecryptionError, FieldCipher
    from controlplane.clinical.recording_export import (
        ExportError,
        export_recording,
        rewrap_recordings,
    )

    env = settings_env()
    if not env.get("DATABASE_URL") or not env.get("TELEMED_DATA_KEYS"):
        print("telemed recording: DATABASE_URL / TELEMED_DATA_KEYS are not set", file=sys.stderr)
        return 2
    actor = Actor(f"cli:{getpass.getuser()}", "admin")
    try:
        cipher = FieldCipher.from_config(env["TELEMED_DATA_KEYS"])
        if args.action == "rewrap":
            job = rewrap_recordings(env["DATABASE_URL"], cipher, args.recording_ids, actor)
        else:
            job = export_recording(
                env["DATABASE_URL"], cipher, args.recording_id, Path(args.out), actor
            )
        result = asyncio.run(job)
    except (ExportError, DecryptionError, ValueError, OSError) as exc:
        print(f"telemed recording {args.action}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def cmd_links(args: argparse.Namespace) -> int:
    """Create an active demo consultation and print a physician link and a patient link."""
    from controlplane.clinical.field_crypto import FieldCipher
    from controlplane.devstack.demo import create_demo_session

    tokens = _token_service("links")
    if tokens is None:
        return 2
    env = settings_env()
    if not env.get("DATABASE_URL") or not env.get("TELEMED_DATA_KEYS"):
        print(
            "telemed links: DATABASE_URL / TELEMED_DATA_KEYS are not set and no `telemed dev` "
            "is running",
            file=sys.stderr,
        )
        return 2
    base = (args.base_url or env.get("TELEMED_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/")
    try:
        result = asyncio.run(
            create_demo_session(
                env["DATABASE_URL"],
                tokens,
                FieldCipher.from_config(env["TELEMED_DATA_KEYS"]),
                session_type=args.session_type,
                physician_id=args.physician_id,
                patient_id=args.patient_id,
                physician_name=args.physician_name,
                patient_name=args.patient_name,
                room_token_ttl=args.ttl or int(env.get("TELEMED_ROOM_TOKEN_TTL", str(4 * 3600))),
            )
        )
    except (ValueError, OSError) as exc:
        print(f"telemed links: {exc}", file=sys.stderr)
        return 2
    room = result["session"]["roomId"]
    links = {
        role: f"{base}/consult/{room}#token={token}" for role, token in result["tokens"].items()
    }
    if args.json:
        print(json.dumps({"sessionId": result["session"]["sessionId"], "roomId": room, **links}))
    else:
        print(f"session {result['session']['sessionId']} ({args.session_type}), room {room}")
        print(f"physician: {links['physician']}")
        print(f"patient:   {links['patient']}")
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from urllib.parse import urlparse

    from controlplane.clinical.db import migrate

    env = settings_env()
    admin_url = env.get("DATABASE_ADMIN_URL", "")
    if not admin_url:
        print("telemed migrate: DATABASE_ADMIN_URL (owner role) is not set", file=sys.stderr)
        return 2
    app_role = urlparse(env.get("DATABASE_URL", "")).username
    applied = asyncio.run(migrate(admin_url, app_role))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def cmd_api_token(args: argparse.Namespace) -> int:
    tokens = _token_service("api-token")
    if tokens is None:
        return 2
    try:
        print(
            tokens.mint_api(
                subject=args.subject, role=args.role, ttl=args.ttl, clinic=args.clinic or None
            )
        )
    except ValueError as exc:
        print(f"telemed api-token: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_room(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    from controlplane.media.room_state import RoomState

    env = settings_env()

    async def run() -> Any:
        redis = aioredis.from_url(
            env.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
        )
        try:
            state = RoomState(redis)
            if args.room_id:
                return await state.snapshot(args.room_id)
            return await state.room_ids()
        finally:
            await redis.aclose()

    result = asyncio.run(run())
    if result is None:
        print(f"telemed room: no live room {args.room_id}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from controlplane.devstack.loadtest import command

    return command(args, settings_env(), _token_service("loadtest"))


def cmd_sfu(args: argparse.Namespace) -> int:
    from controlplane.placement import operations
    from controlplane.placement.sfu_client import SfuError

    env = settings_env()
    try:
        if args.action == "drain":
            result: Any = asyncio.run(operations.drain(env, args.node_id))
        else:
            result = asyncio.run(operations.list_nodes(env))
    except SfuError as exc:
        print(f"telemed sfu: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the control plane (settings from the environment)")

    dev = sub.add_parser(
        "dev", help="run the whole system locally (Redis, PostgreSQL, SFU, control plane)"
    )
    dev.add_argument("--data-dir", type=Path, default=DATA_DIR)
    dev.add_argument("--port", type=int, default=int(os.environ.get("TELEMED_PORT", "8080")))
    dev.add_argument("--sfu-port", type=int, default=int(os.environ.get("SFU_LISTEN_PORT", "4443")))
    dev.add_argument("--redis-port", type=int, default=6390)
    dev.add_argument("--postgres-port", type=int, default=5490)
    # Not 3478: a coturn installed from Debian may already run there as a system service.
    dev.add_argument("--turn-port", type=int, default=3479)
    dev.add_argument(
        "--https",
        action="store_true",
        help="serve HTTPS/WSS with a certificate from a local CA (printed), on --host",
    )
    dev.add_argument(
        "--host",
        default="",
        help="address to serve on (default 127.0.0.1; with --https this machine's LAN address)",
    )
    dev.add_argument("--only-sfu", action="store_true", help="start only Redis and the SFU node")

    mint = sub.add_parser(
        "mint-token", help="mint a room token for one participant of one consultation"
    )
    mint.add_argument("--consultation", required=True)
    mint.add_argument("--participant", required=True)
    mint.add_argument(
        "--role", required=True, choices=("physician", "patient", "coordinator", "admin")
    )
    mint.add_argument("--call-type", default="consultation")
    mint.add_argument("--name", help="display name shown to the other participants")
    mint.add_argument("--ttl", type=int, help="lifetime in seconds")

    links = sub.add_parser("links", help="create an active demo consultation; print its links")
    links.add_argument("--session-type", default="consultation")
    links.add_argument("--physician-id", default="dr-demo")
    links.add_argument("--patient-id", default="pt-demo")
    links.add_argument("--physician-name", default="Dr. Demo", help="shown on the tiles")
    links.add_argument("--patient-name", default="Patient", help="shown on the tiles")
    links.add_argument("--base-url", help="public URL of the control plane")
    links.add_argument("--ttl", type=int, help="room token lifetime in seconds")
    links.add_argument("--json", action="store_true")

    sub.add_parser("migrate", help="apply database migrations (DATABASE_ADMIN_URL)")

    api = sub.add_parser("api-token", help="mint a REST API access token (development)")
    api.add_argument("--subject", required=True)
    api.add_argument(
        "--role", required=True, choices=("physician", "patient", "coordinator", "admin")
    )
    api.add_argument("--ttl", type=int, default=3600)
    api.add_argument(
        "--clinic",
        default="",
        help="the clinic a coordinator or admin acts for (required for them)",
    )

    from controlplane.devstack.loadtest import add_arguments

    add_arguments(
        sub.add_parser(
            "loadtest",
            help="run consultations against a deployment; print join times, media, loss, errors",
        )
    )

    recording = sub.add_parser("recording", help="recordings (administrators)")
    actions = recording.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="decrypt a recording to a file (audited)")
    export.add_argument("recording_id")
    export.add_argument("--out", required=True, help="the file to write (must not exist)")
    rewrap = actions.add_parser(
        "rewrap", help="wrap recordings' keys with the current (first) TELEMED_DATA_KEYS key"
    )
    rewrap.add_argument("recording_ids", nargs="*", help="only these (default: all)")

    room = sub.add_parser("room", help="show live rooms, or who is in one and what they send")
    room.add_argument("room_id", nargs="?")
    sfu = sub.add_parser("sfu", help="SFU nodes: list them, drain one")
    sfu_actions = sfu.add_subparsers(dest="action", required=True)
    sfu_actions.add_parser("nodes", help="the registered nodes, their load, whether draining")
    drain = sfu_actions.add_parser(
        "drain", help="no new rooms on NODE; its calls go on; it exits when empty"
    )
    drain.add_argument("node_id")

    from controlplane.cli import data_rights

    data_rights.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": serve.cmd_serve,
        "dev": cmd_dev,
        "mint-token": cmd_mint_token,
        "links": cmd_links,
        "migrate": cmd_migrate,
        "api-token": cmd_api_token,
        "room": cmd_room,
        "recording": cmd_recording,
        "sfu": cmd_sfu,
        "loadtest": cmd_loadtest,
    }
    from controlplane.cli import data_rights

    handlers.update(data_rights.HANDLERS)
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"telemed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
