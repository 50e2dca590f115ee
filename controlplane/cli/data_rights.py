"""`telemed audit verify` (walk the audit chain, sign a checkpoint) and
`telemed export PATIENT` (the patient's FHIR R4 Bundle to a file), for
administrators with the deployment's configuration; both audited."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

from controlplane.cli import settings_env


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the audit trail (administrators)")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify", help="verify the hash chain and its signed checkpoints; sign a new one"
    )
    verify.add_argument(
        "--incremental", action="store_true", help="only since the newest signed checkpoint"
    )
    export = sub.add_parser("export", help="write a patient's data as a FHIR R4 Bundle (audited)")
    export.add_argument("patient_id")
    export.add_argument("--out", required=True, help="the file to write (must not exist)")


def _configured(command: str) -> dict[str, str] | None:
    from controlplane.logs import configure_logging

    configure_logging()  # logs to standard error; standard output is the result
    env = settings_env()
    if not env.get("DATABASE_URL") or not env.get("TELEMED_DATA_KEYS"):
        print(f"telemed {command}: DATABASE_URL / TELEMED_DATA_KEYS are not set", file=sys.stderr)
        return None
    return env


def cmd_audit(args: argparse.Namespace) -> int:
    from controlplane.clinical.audit_integrity import AuditIntegrity
    from controlplane.clinical.db import create_pool
    from controlplane.clinical.field_crypto import FieldCipher

    env = _configured("audit verify")
    if env is None:
        return 2

    async def run() -> int:
        pool = await create_pool(env["DATABASE_URL"], max_size=2)
        try:
            integrity = AuditIntegrity(pool, FieldCipher.from_config(env["TELEMED_DATA_KEYS"]))
            status = await integrity.verify(full=not args.incremental)
        finally:
            await pool.close()
        print(json.dumps(status.body()))
        return 0 if status.ok else 1

    return asyncio.run(run())


def cmd_export(args: argparse.Namespace) -> int:
    from controlplane.clinical.audit import Actor, AuditLog
    from controlplane.clinical.db import create_pool
    from controlplane.clinical.field_crypto import FieldCipher
    from controlplane.clinical.patient_export import PatientExport

    env = _configured("export")
    if env is None:
        return 2
    out = Path(args.out)
    if out.exists():
        print(f"telemed export: {out} exists", file=sys.stderr)
        return 2

    async def run() -> dict[str, object]:
        pool = await create_pool(env["DATABASE_URL"], max_size=2)
        try:
            audit = AuditLog(pool)
            export = PatientExport(
                pool,
                audit,
                FieldCipher.from_config(env["TELEMED_DATA_KEYS"]),
                env.get("TELEMED_PUBLIC_URL", ""),
            )
            actor = Actor(f"cli:{getpass.getuser()}", "admin")
            return await export.bundle(actor, args.patient_id, None)
        finally:
            await pool.close()

    bundle = asyncio.run(run())
    # Health data: readable by the one who wrote it only.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(bundle, file)
    entries = bundle.get("entry", [])
    print(
        json.dumps(
            {"file": str(out), "resources": len(entries) if isinstance(entries, list) else 0}
        )
    )
    return 0


HANDLERS = {"audit": cmd_audit, "export": cmd_export}
