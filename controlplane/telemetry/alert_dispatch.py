"""What happens when an alert is raised or cleared: it is stored, counted, logged
(identifiers only), pushed to the staff channel and handed to the webhook."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from controlplane.telemetry.alert_rules import Transition
from controlplane.telemetry.alert_store import AlertStore
from controlplane.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

StaffPush = Callable[[str, dict[str, Any]], Awaitable[None]]
WebhookSend = Callable[[str, dict[str, Any]], None]


class SessionDirectory(Protocol):
    async def id_for_room(self, room_id: str) -> str | None: ...

    async def clinic_for_room(self, room_id: str) -> str | None: ...


class AlertDispatcher:
    def __init__(
        self,
        store: AlertStore,
        sessions: SessionDirectory,
        metrics: Metrics,
        *,
        staff_push: StaffPush | None = None,
        webhook: WebhookSend | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._metrics = metrics
        self._staff_push = staff_push
        self._webhook = webhook

    async def on_transition(self, transition: Transition, call_type: str) -> None:
        room_id, participant_id = transition.key
        session_id, clinic_id = await self._session_of(room_id)
        payload: dict[str, Any] = {
            "clinicId": clinic_id,
            "rule": transition.rule,
            "severity": transition.severity,
            "description": transition.description,
            "roomId": room_id,
            "participantId": participant_id,
            "callType": call_type,
            "at": time.time(),
            "sessionId": session_id,
        }
        if transition.raised:
            self._metrics.alerts.labels(transition.rule, transition.severity).inc()
            payload["alertId"] = await self._store.raised(
                rule=transition.rule,
                severity=transition.severity,
                room_id=room_id,
                session_id=session_id,
                participant_id=participant_id,
                call_type=call_type,
                description=transition.description,
            )
            log.warning(
                "alert_raised",
                rule=transition.rule,
                severity=transition.severity,
                room_id=room_id,
                participant_id=participant_id,
            )
        else:
            payload["reason"] = "resolved"
            await self._store.cleared(room_id, participant_id, transition.rule)
            log.info(
                "alert_cleared",
                rule=transition.rule,
                room_id=room_id,
                participant_id=participant_id,
            )
        event = "alert" if transition.raised else "alertCleared"
        await self._publish(event, payload)

    async def recording_failed(self, room_id: str, recording_id: str, call_type: str) -> None:
        """A consultation's recorder died: a critical alert for its clinic's staff."""
        session_id, clinic_id = await self._session_of(room_id)
        description = "the recording stopped: the recorder failed"
        self._metrics.alerts.labels("recording_failed", "critical").inc()
        alert_id = await self._store.raised(
            rule="recording_failed",
            severity="critical",
            room_id=room_id,
            session_id=session_id,
            participant_id="recorder",
            call_type=call_type,
            description=description,
        )
        log.error("alert_raised", rule="recording_failed", severity="critical", room_id=room_id)
        await self._publish(
            "alert",
            {
                "alertId": alert_id,
                "clinicId": clinic_id,
                "rule": "recording_failed",
                "severity": "critical",
                "description": description,
                "roomId": room_id,
                "recordingId": recording_id,
                "callType": call_type,
                "at": time.time(),
                "sessionId": session_id,
            },
        )

    async def participant_left(self, room_id: str, participant_id: str) -> None:
        """Close the participant's open alerts, reason ``participant_left``."""
        rules = await self._store.clear_all(room_id, participant_id, "participant_left")
        if not rules:
            return
        session_id, clinic_id = await self._session_of(room_id)
        for rule in rules:
            log.info("alert_cleared", rule=rule, room_id=room_id, participant_id=participant_id)
            await self._publish(
                "alertCleared",
                {
                    "rule": rule,
                    "roomId": room_id,
                    "participantId": participant_id,
                    "sessionId": session_id,
                    "clinicId": clinic_id,
                    "reason": "participant_left",
                    "at": time.time(),
                },
            )

    async def _session_of(self, room_id: str) -> tuple[str | None, str | None]:
        """The room's session and clinic (None, None when they cannot be read)."""
        try:
            return (
                await self._sessions.id_for_room(room_id),
                await self._sessions.clinic_for_room(room_id),
            )
        except Exception:
            log.warning("alert_session_unknown", room_id=room_id)
            return None, None

    async def _publish(self, event: str, payload: dict[str, Any]) -> None:
        if self._staff_push is not None:
            await self._staff_push(event, payload)
        if self._webhook is not None:
            self._webhook(event, payload)
