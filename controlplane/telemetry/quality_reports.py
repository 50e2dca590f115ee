"""Per consultation quality detail for the REST API: each participant's recent
samples (newest first) and open alerts.  Coordinators, admins and the session's
physician only (session_access)."""

from __future__ import annotations

from typing import Any

from controlplane.auth import ApiClaims
from controlplane.clinical.session_access import SessionAccess
from controlplane.telemetry.alert_store import AlertStore
from controlplane.telemetry.quality_history import QualityHistory

QUALITY_FIELDS = ("at", "score", "loss", "jitter", "connected")
NETWORK_FIELDS = ("at", "rtt", "receiveBitrate", "sendBitrate", "connected", "streams")


class QualityReports:
    def __init__(self, access: SessionAccess, history: QualityHistory, alerts: AlertStore) -> None:
        self._access = access
        self._history = history
        self._alerts = alerts

    async def quality(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        return {
            **await self._report(claims, session_id, QUALITY_FIELDS),
            "units": {"jitter": "seconds", "loss": "ratio", "score": "0-10"},
        }

    async def network(self, claims: ApiClaims, session_id: str) -> dict[str, Any]:
        return {
            **await self._report(claims, session_id, NETWORK_FIELDS),
            "units": {"rtt": "seconds", "bitrate": "bits per second"},
        }

    async def _report(
        self, claims: ApiClaims, session_id: str, keep: tuple[str, ...]
    ) -> dict[str, Any]:
        session = await self._access.for_staff(claims, session_id)
        participants = []
        for participant_id, role in sorted(session.participants.items()):
            history = [
                {k: h.get(k) for k in keep}
                for h in await self._history.recent(session.room_id, participant_id)
            ]
            alerts = await self._alerts.open_for(session.room_id, participant_id)
            participants.append(
                {
                    "participantId": participant_id,
                    "role": role,
                    "latest": history[0] if history else None,
                    "history": history,
                    "openAlerts": [
                        {
                            "rule": a.rule,
                            "severity": a.severity,
                            "raisedAt": a.raised_at.isoformat(),
                        }
                        for a in alerts
                    ],
                }
            )
        return {"sessionId": session.id, "participants": participants}
