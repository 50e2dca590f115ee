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

from controlplane.clinical.audit import Actor, AuditLog
from schemas.errors import ApiError, ErrorCode

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
        self, clinician_id: str, crm: str, uf: str, specialties: list[str]
    ) -> None:
        if not valid_crm(crm, uf):
            raise ApiError(ErrorCode.VALIDATION_ERROR, "invalid CRM", {"crm": ["invalid CRM"]})
        await self._pool.execute(
            """INSERT INTO clinicians (id, crm, uf, specialties) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO UPDATE SET crm = $2, uf = $3, specialties = $4""",
            clinician_id,
            crm,
            uf,
            specialties,
        )

    async def clinician_crm(self, clinician_id: str) -> tuple[str, str] | None:
        """A registered clinician's CRM and UF."""
        row = await self._pool.fetchrow(
            "SELECT crm, uf FROM clinicians WHERE id = $1", clinician_id
        )
        return (row["crm"], row["uf"]) if row is not None else None


def licence_problem(licence: Licence | None, specialty: str | None) -> str | None:
    """Why a licence does not allow this teleconsultation, or None when it does
    (``specialty`` None: any specialty, e.g. a nurse or a consulted specialist)."""
    if licence is None:
        return "no licence on record for this CRM"
    if licence.status != "active":
        return f"licence is {licence.status}"
    if not licence.telemedicine_authorized:
        return "licence is not authorised for telemedicine"
    if specialty is not None and specialty not in licence.specialties:
        return "specialty does not match the licence"
    return None


class LicenceGate:
    """Refuses (audited, PHYSICIAN_NOT_AUTHORIZED) a physician whose licence does not
    allow this teleconsultation; used when a session is created and started."""

    def __init__(self, registry: PostgresLicenceRegistry, audit: AuditLog) -> None:
        self._registry = registry
        self._audit = audit

    async def require(
        self,
        actor: Actor,
        physician_id: str,
        specialty: str | None,
        action: str,
        session_id: str | None,
    ) -> None:
        crm = await self._registry.clinician_crm(physician_id)
        problem = (
            "physician is not registered"
            if crm is None
            else licence_problem(await self._registry.lookup(*crm), specialty)
        )
        if problem:
            raise await self._audit.deny(
                actor,
                "licence.check",
                ErrorCode.PHYSICIAN_NOT_AUTHORIZED,
                f"the physician may not hold this teleconsultation: {problem}",
                resource_type="clinician",
                resource_id=physician_id,
                session_id=session_id,
                details={"reason": problem, "during": action},
            )


class ClinicianAdmin:
    """Admin operations on clinicians and the licence registry (audited)."""

    def __init__(self, registry: PostgresLicenceRegistry, audit: AuditLog) -> None:
        self._registry = registry
        self._audit = audit

    @staticmethod
    def require_admin(actor: Actor) -> None:
        if actor.role != "admin":
            raise ApiError(ErrorCode.FORBIDDEN, "requires one of the roles: admin")

    async def register(
        self, actor: Actor, clinician_id: str, crm: str, uf: str, specialties: list[str]
    ) -> None:
        self.require_admin(actor)
        await self._registry.register_clinician(clinician_id, crm, uf, specialties)
        await self._audit.record(
            actor, "clinician.upsert", resource_type="clinician", resource_id=clinician_id
        )

    async def load(self, actor: Actor, licences: list[Licence], source: str) -> int:
        self.require_admin(actor)
        count = await self._registry.upsert(licences, source)
        await self._audit.record(
            actor, "licence.load", resource_type="licence_registry", details={"count": count}
        )
        return count
