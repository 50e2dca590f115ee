"""Alert rules with hysteresis (pure logic, no I/O).

A rule's condition must hold for ``raise_after`` seconds before the alert is
raised, and must be absent for ``clear_after`` seconds before it clears, so a
noisy metric does not flap.  One state machine per (rule, consultation,
participant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.telemetry.call_quality import Sample

LATENCY_RTT = 0.5  # seconds
LOSS_RATIO = 0.05
MIN_BITRATE = 256_000  # bits per second
DEGRADED_SCORE = 5.0


@dataclass(frozen=True)
class Observation:
    """What the engine sees of one participant at one moment."""

    call_type: str
    samples: tuple[Sample, ...]
    score: float
    connected: bool = True
    # Available downlink bandwidth (bits/s): the SFU's estimate, or the goodput on a lossy path.
    bandwidth: float | None = None

    def worst(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples if getattr(s, attribute) is not None]
        return max(values) if values else None

    def receive_bitrate(self) -> float | None:
        # What reaches the participant (SFU -> participant), audio + video.
        values = [
            s.bitrate
            for s in self.samples
            if s.direction == "recv" and s.source == "sfu" and s.bitrate is not None
        ]
        return sum(values) if values else None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    condition: Callable[[Observation], bool]
    severity: Callable[[Observation], str]
    raise_after: float
    clear_after: float


def _severity(emergency: str, other: str) -> Callable[[Observation], str]:
    return lambda o: emergency if o.call_type == "emergency" else other


def default_rules(raise_after: float = 4.0, clear_after: float = 6.0) -> list[Rule]:
    return [
        Rule(
            "high_latency",
            "round-trip time above 500 ms",
            lambda o: (o.worst("rtt") or 0.0) > LATENCY_RTT,
            _severity("critical", "warning"),
            raise_after,
            clear_after,
        ),
        Rule(
            "connection_lost",
            "media connection lost during an emergency call",
            lambda o: o.call_type == "emergency" and not o.connected,
            _severity("critical", "critical"),
            0.0,
            clear_after,
        ),
        Rule(
            "quality_degraded",
            "quality score below 5 of 10",
            lambda o: o.score < DEGRADED_SCORE,
            _severity("warning", "info"),
            raise_after,
            clear_after,
        ),
        Rule(
            "packet_loss",
            "packet loss above 5%",
            lambda o: (o.worst("loss") or 0.0) > LOSS_RATIO,
            _severity("critical", "warning"),
            raise_after,
            clear_after,
        ),
        Rule(
            "low_bandwidth",
            "bandwidth below 256 kbps",
            lambda o: o.bandwidth is not None and 0 < o.bandwidth < MIN_BITRATE,
            _severity("critical", "warning"),
            raise_after,
            clear_after,
        ),
    ]


@dataclass
class _State:
    active: bool = False
    since: float | None = None  # when the condition started (or stopped, while active)
    severity: str = "warning"


@dataclass(frozen=True)
class Transition:
    rule: str
    key: tuple[str, str]  # (consultation, participant)
    raised: bool  # True: raised; False: cleared
    severity: str
    description: str
    at: float


@dataclass
class AlertEngine:
    rules: list[Rule] = field(default_factory=default_rules)
    _states: dict[tuple[str, tuple[str, str]], _State] = field(default_factory=dict)

    def evaluate(
        self, key: tuple[str, str], observation: Observation, now: float
    ) -> list[Transition]:
        transitions = []
        for rule in self.rules:
            state = self._states.setdefault((rule.name, key), _State())
            holds = rule.condition(observation)
            if not state.active:
                if holds:
                    state.since = now if state.since is None else state.since
                    if now - state.since >= rule.raise_after:
                        state.active, state.since = True, None
                        state.severity = rule.severity(observation)
                        transitions.append(
                            Transition(rule.name, key, True, state.severity, rule.description, now)
                        )
                else:
                    state.since = None
            else:
                if not holds:
                    state.since = now if state.since is None else state.since
                    if now - state.since >= rule.clear_after:
                        state.active, state.since = False, None
                        transitions.append(
                            Transition(rule.name, key, False, state.severity, rule.description, now)
                        )
                else:
                    state.since = None
        return transitions

    def active(self, key: tuple[str, str] | None = None) -> list[tuple[str, tuple[str, str]]]:
        return [
            (rule, k)
            for (rule, k), s in self._states.items()
            if s.active and (key is None or k == key)
        ]

    def keys(self) -> set[tuple[str, str]]:
        return {k for (_rule, k) in self._states}

    def forget(self, key: tuple[str, str]) -> None:
        """The participant left: drop its state (its open alerts are closed in the store)."""
        for rule, k in list(self._states):
            if k == key:
                del self._states[(rule, k)]
