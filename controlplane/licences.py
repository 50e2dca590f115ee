"""Clinician licence verification (CFM): CRM format, the licence registry, and
the checks that gate session creation and start.

The registry lookup sits behind ``LicenceRegistry`` so a real CFM lookup can
replace the PostgreSQL table that an admin loads (``POST admin/licences`` or
``telemed licences load``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import asyncpg

UFS = frozenset(
    "AC AL AP AM BA CE DF ES GO MA MT MS MG PA PB PR PE PI RJ RN RS RO RR SC SP SE TO".split()
)
_CRM = re.compile(r"^[0-9]{1,7}$")


def valid_crm(crm: str, uf: str) -> bool:
    return bool(_CRM.match(crm)) and int(crm) > 0 and uf in UFS


@dataclass(frozen=True)
class Licence:
    crm: str
    uf: str
    status: str
    telemedicine_authorized: bool
    specialties: tuple[str, ...]


class LicenceRegistry(Protocol):
    async def lookup(self, crm: str, uf: str) -> Licence | None: ...


class PostgresLicenceRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lookup(self, crm: str, uf: str) -> Licence | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM licence_registry WHERE crm = $1 AND uf = $2", crm, uf
        )
        if row is None:
            return None
        return Licence(
            row["crm"],
            row["uf"],
            row["status"],
            row["telemedicine_authorized"],
            tuple(row["specialties"]),
        )

    async def upsert(self, licences: list[Licence], source: str) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            for lic in licences:
                await conn.execute(
                    """INSERT INTO licence_registry (crm, uf, status, telemedicine_authorized,
                           specialties, source, updated_at)
                       VALUES ($1, $2, $3, $4, $5, $6, now())
                       ON CONFLICT (crm, uf) DO UPDATE SET status = $3,
                           telemedicine_authorized = $4, specialties = $5, source = $6,
                           updated_at = now()""",
                    lic.crm,
                    lic.uf,
                    lic.status,
                    lic.telemedicine_authorized,
                    list(lic.specialties),
                    source,
                )
        return len(licences)


async def register_clinician(
    pool: asyncpg.Pool, clinician_id: str, crm: str, uf: str, specialties: list[str]
) -> None:
    if not valid_crm(crm, uf):
        raise ValueError("invalid CRM or UF")
    await pool.execute(
        """INSERT INTO clinicians (id, crm, uf, specialties) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET crm = $2, uf = $3, specialties = $4""",
        clinician_id,
        crm,
        uf,
        specialties,
    )


def licence_problem(licence: Licence | None, specialty: str) -> str | None:
    """Why a licence does not allow this teleconsultation, or None when it does."""
    if licence is None:
        return "no licence on record for this CRM"
    if licence.status != "active":
        return f"licence is {licence.status}"
    if not licence.telemedicine_authorized:
        return "licence is not authorised for telemedicine"
    if specialty not in licence.specialties:
        return "specialty does not match the licence"
    return None
