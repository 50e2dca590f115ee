"""A small REST client for the tests, plus the setup a real session needs."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from tests.conftest import Stack

SPECIALTY = "cardiologia"
CLINIC = "clinic-1"  # of the sessions tests create (and of tests/conftest.py's seeded ones)


@dataclass
class Response:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        return (
            (self.body or {}).get("error", {}).get("code") if isinstance(self.body, dict) else None
        )


class Api:
    def __init__(self, stack: Stack, http: aiohttp.ClientSession, url: str | None = None) -> None:
        self.stack = stack
        self.http = http
        self.url = url or stack.url  # a control plane of the test's own, when given

    def token(self, subject: str, role: str, **kwargs: Any) -> str:
        if role in ("coordinator", "admin"):
            kwargs.setdefault("clinic", CLINIC)
        return self.stack.tokens.mint_api(subject=subject, role=role, **kwargs)

    async def call(self, method: str, path: str, token: str | None, body: Any = None) -> Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.url}/api/telemedicine/{path}"
        async with self.http.request(method, url, json=body, headers=headers) as response:
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = await response.text()
            return Response(response.status, payload)

    async def admin(self, method: str, path: str, body: Any = None) -> Response:
        return await self.call(method, path, self.token("admin-1", "admin"), body)

    async def record(self, session_id: str, physician: str, seconds: float = 2.0) -> str:
        """The session's physician records ``seconds`` of its call; the recording id."""
        token = self.token(physician, "physician")
        started = await self.call("POST", "recording/start", token, {"sessionId": session_id})
        assert started.status == 200, started.body
        await asyncio.sleep(seconds)
        recording_id = str(started.body["recordingId"])
        stopped = await self.call("POST", "recording/stop", token, {"recordingId": recording_id})
        assert stopped.status == 200, stopped.body
        return recording_id

    # ---- setup a session needs --------------------------------------------------------

    async def licensed_physician(
        self,
        *,
        status: str = "active",
        telemedicine: bool = True,
        specialty: str = SPECIALTY,
    ) -> str:
        physician = f"dr-{secrets.token_hex(3)}"
        crm = str(secrets.randbelow(899999) + 100000)
        assert (
            await self.admin(
                "POST",
                "admin/clinicians",
                {"id": physician, "crm": crm, "uf": "SP", "specialties": [specialty]},
            )
        ).status == 201
        assert (
            await self.admin(
                "POST",
                "admin/licences",
                {
                    "licences": [
                        {
                            "crm": crm,
                            "uf": "SP",
                            "status": status,
                            "telemedicineAuthorized": telemedicine,
                            "specialties": [specialty],
                        }
                    ]
                },
            )
        ).status == 200
        return physician

    async def consenting_patient(self, purposes: tuple[str, ...] = ("teleconsultation",)) -> str:
        patient = f"pt-{secrets.token_hex(3)}"
        for purpose in purposes:
            version = await self.consent_version(purpose)
            granted = await self.call(
                "POST",
                "consent",
                self.token(patient, "patient"),
                {"patientId": patient, "purpose": purpose, "version": version},
            )
            assert granted.status == 201, granted.body
        return patient

    async def consent_version(self, purpose: str) -> int:
        texts = (await self.call("GET", "consent/texts", None)).body["texts"]
        current = {t["purpose"]: t["version"] for t in texts}
        if purpose in current:
            return int(current[purpose])
        published = await self.admin(
            "POST",
            "consent/texts",
            {"purpose": purpose, "text": f"Consent text for {purpose} (test)."},
        )
        assert published.status == 201, published.body
        return int(published.body["version"])

    def session_body(self, physician: str, patient: str, **overrides: Any) -> dict[str, Any]:
        return {
            "patientId": patient,
            "physicianId": physician,
            "sessionType": "consultation",
            "specialty": SPECIALTY,
            "scheduledFor": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            "estimatedDuration": 30,
            "clinicId": CLINIC,
            **overrides,
        }

    async def active_session(self, **overrides: Any) -> tuple[dict[str, Any], str, str]:
        physician = await self.licensed_physician()
        patient = await self.consenting_patient()
        doctor_token = self.token(physician, "physician")
        created = await self.call(
            "POST",
            "session/create",
            doctor_token,
            self.session_body(physician, patient, **overrides),
        )
        assert created.status == 201, created.body
        started = await self.call(
            "POST", "session/start", doctor_token, {"sessionId": created.body["sessionId"]}
        )
        assert started.status == 200, started.body
        return started.body, physician, patient
