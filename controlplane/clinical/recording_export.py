"""`telemed recording export`: an administrator decrypts a recording to a file;
`telemed recording rewrap`: after a key rotation, recordings' keys are wrapped
again with the current key-encryption key, so that the old one can be retired.

The segments are decrypted and joined in memory (as for a download) and piped into
ffmpeg, which copies the streams into a seekable Matroska file (with the duration
and cues the recorder could not write into its pipe).  The export is audited; the file written is
plaintext on purpose, so the command refuses to overwrite and creates it mode 0600.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from pyrage import x25519

from controlplane.clinical.audit import Actor, AuditLog
from controlplane.clinical.field_crypto import FieldCipher
from controlplane.clinical.recording_media import joined


class ExportError(Exception):
    """The recording cannot be exported (the message says why)."""


def _write_export(segments: list[dict[str, Any]], identity: x25519.Identity, out: Path) -> int:
    """Decrypt and join into ffmpeg, which writes ``out`` (0600); its size."""
    out.touch(mode=0o600, exist_ok=False)
    try:
        media = joined(segments, identity)
        remux_args = ["-map", "0", "-c", "copy", "-f", "matroska", str(out)]
        remux = subprocess.run(
            ["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *remux_args],
            input=media,
            capture_output=True,
            timeout=600,
            check=False,
        )
        if remux.returncode != 0:
            raise ExportError(f"ffmpeg: {remux.stderr.decode(errors='replace')[-300:]}")
        return out.stat().st_size
    except BaseException:
        out.unlink(missing_ok=True)
        raise


async def export_recording(
    database_url: str, cipher: FieldCipher, recording_id: str, out: Path, actor: Actor
) -> dict[str, object]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT session_id, status, segments, wrapped_key FROM recordings WHERE id = $1",
                uuid.UUID(recording_id),
            )
        if row is None:
            raise ExportError("no such recording")
        segments = json.loads(row["segments"])
        if row["status"] != "completed" or row["wrapped_key"] is None or not segments:
            raise ExportError(f"the recording is {row['status']}")
        identity = x25519.Identity.from_str(
            cipher.decrypt(bytes(row["wrapped_key"]), f"recording:{recording_id}")
        )
        try:
            size = await asyncio.to_thread(_write_export, segments, identity, out)
        except FileExistsError:
            raise ExportError(f"{out} exists; choose another path") from None
        await AuditLog(pool).record(
            actor,
            "recording.export",
            resource_type="recording",
            resource_id=recording_id,
            session_id=str(row["session_id"]),
            details={"bytes": size},
        )
        return {"recordingId": recording_id, "file": str(out), "bytes": size}
    finally:
        await pool.close()


async def rewrap_recordings(
    database_url: str, cipher: FieldCipher, recording_ids: list[str], actor: Actor
) -> dict[str, object]:
    """Wrap each stored recording key (all, or ``recording_ids``) with the current
    key; one audit entry with the count.  Keys already current are left alone."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        ids = [uuid.UUID(i) for i in recording_ids]
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, wrapped_key FROM recordings WHERE wrapped_key IS NOT NULL
                   AND (cardinality($1::uuid[]) = 0 OR id = ANY($1::uuid[]))""",
                ids,
            )
            rewrapped = 0
            for row in rows:
                blob = cipher.rewrapped(bytes(row["wrapped_key"]), f"recording:{row['id']}")
                if blob is None:
                    continue
                await conn.execute(
                    "UPDATE recordings SET wrapped_key = $2 WHERE id = $1", row["id"], blob
                )
                rewrapped += 1
        await AuditLog(pool).record(
            actor,
            "recording.rewrap",
            resource_type="recording",
            details={"rewrapped": rewrapped, "checked": len(rows)},
        )
        return {"rewrapped": rewrapped, "checked": len(rows)}
    finally:
        await pool.close()
