"""Every REST endpoint fuzzed from the OpenAPI document (schemathesis, its CLI
against a real control plane), as an admin, a physician, a patient and nobody:
no 5xx answer, no unhandled exception in the server log, and another clinic's
session (its row, participants and records, its patient's consents) unchanged.

Bounded here (``FUZZ_EXAMPLES`` per operation); ``bench/fuzz.py`` runs longer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack
from tests.fault_injection import Instance
from tests.integration.api_client import Api

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "15")
ST = Path(sys.executable).with_name("st")


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(stack, http)


def victim_state(stack: Stack, session_id: str, patient: str) -> str:
    return stack.psql(
        f"""SELECT concat_ws('|',
              (SELECT s::text FROM sessions s WHERE id = '{session_id}'),
              (SELECT string_agg(p::text, ',' ORDER BY participant_id)
                 FROM session_participants p WHERE session_id = '{session_id}'),
              (SELECT string_agg(r::text, ',' ORDER BY id)
                 FROM clinical_records r WHERE session_id = '{session_id}'),
              (SELECT string_agg(c::text, ',' ORDER BY id) FROM consents c
                 WHERE patient_id = '{patient}'))"""
    )


def schemathesis(url: str, token: str | None, report: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(ST),
        "run",
        f"{url}/api/telemedicine/openapi.json",
        "--url",
        url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        FUZZ_EXAMPLES,
        "--seed",
        "20261121",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    if token:
        command += ["--header", f"Authorization: Bearer {token}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


async def test_fuzzed_rest_calls_never_fail_the_server_nor_touch_another_clinic(
    stack: Stack, api: Api, instance: Callable[..., Instance], tmp_path: Path
) -> None:
    # The fuzzer tests the handlers, not the limits: let it send as fast as it can.
    cp = instance(
        TELEMED_RATE_REST_CALLER="100000/minute", TELEMED_RATE_REST_ADDRESS="100000/minute"
    )
    physician = await api.licensed_physician()
    patient = await api.consenting_patient()
    created = await api.call(
        "POST",
        "session/create",
        api.token(physician, "physician"),
        api.session_body(physician, patient, clinicId="clinic-victim", notes="Dor torácica"),
    )
    assert created.status == 201, created.body
    session_id = created.body["sessionId"]
    before = victim_state(stack, session_id, patient)

    tokens = {
        "admin": stack.tokens.mint_api(subject="admin-fuzz", role="admin", clinic="clinic-fuzz"),
        "physician": stack.tokens.mint_api(subject="dr-fuzz", role="physician"),
        "patient": stack.tokens.mint_api(subject="pt-fuzz", role="patient"),
        "nobody": None,
    }
    for who, token in tokens.items():
        run = await asyncio.to_thread(schemathesis, cp.url, token, tmp_path / f"{who}.xml")
        assert run.returncode == 0, f"{who}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
        # It did send requests (the summary counts test cases per operation).
        assert "passed" in run.stdout.lower(), run.stdout[-2000:]

    assert victim_state(stack, session_id, patient) == before
    log = cp.process.log_path.read_text(errors="replace")
    for marker in ("Traceback", "rest_internal_error"):
        at = log.find(marker)
        assert at < 0, log[max(0, at - 300) : at + 3000]
