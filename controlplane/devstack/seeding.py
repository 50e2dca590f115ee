"""Active sessions written straight into PostgreSQL for tests and benchmarks that
need many consultations at once (the sessions API, with its licence and consent
checks, has its own tests): one statement for any number of rooms."""

from __future__ import annotations

import re

ID = re.compile(r"[A-Za-z0-9_.:-]+")


def active_sessions_sql(
    rooms: list[str],
    members: list[tuple[str, str]],
    *,
    session_type: str = "consultation",
    clinic: str = "clinic-1",
    created_by: str = "test-seed",
    physician: str = "seed-dr",
    patient: str = "seed-pt",
) -> str:
    """SQL that makes an active session of ``session_type`` for each room, naming
    each member ``(prefix, role)`` as participant ``<prefix>-<room>``."""
    named = [*rooms, *(part for member in members for part in member)]
    for value in [*named, session_type, clinic, created_by, physician, patient]:
        if not ID.fullmatch(value):
            raise ValueError(f"not an id: {value!r}")  # ids only, never SQL
    room_values = ", ".join(f"('{room}')" for room in rooms)
    member_values = ", ".join(f"('{prefix}', '{role}')" for prefix, role in members)
    return (
        "INSERT INTO clinicians (id, crm, uf, specialties) "
        f"VALUES ('{physician}', '1', 'SP', '{{}}') "
        "ON CONFLICT DO NOTHING; "
        "INSERT INTO sessions (id, room_id, patient_id, physician_id, session_type, specialty, "
        "scheduled_for, estimated_duration_minutes, clinic_id, status, created_by, started_at, "
        "last_activity_at, licence_verified, consent_obtained) "
        f"SELECT gen_random_uuid(), r, '{patient}', '{physician}', '{session_type}', 'seed', "
        "now(), 30, "
        f"'{clinic}', 'active', '{created_by}', now(), now(), true, true "
        f"FROM (VALUES {room_values}) AS v(r) ON CONFLICT (room_id) DO NOTHING; "
        "INSERT INTO session_participants (session_id, participant_id, role) "
        "SELECT s.id, p.pid || '-' || s.room_id, p.role FROM sessions s, "
        f"(VALUES {member_values}) AS p(pid, role) "
        f"WHERE s.room_id IN (SELECT r FROM (VALUES {room_values}) AS v(r)) "
        "ON CONFLICT DO NOTHING;"
    )
