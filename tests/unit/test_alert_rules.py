"""Alert engine: raise after the condition holds, clear after it stops, no flapping."""

from __future__ import annotations

from controlplane.telemetry.alert_rules import AlertEngine, Observation
from controlplane.telemetry.call_quality import Sample

KEY = ("room-1", "pt-1")


def obs(
    call_type: str = "consultation",
    rtt: float = 0.02,
    loss: float = 0.0,
    bitrate: float = 1_000_000,
    score: float = 10.0,
    connected: bool = True,
) -> Observation:
    return Observation(
        call_type,
        (Sample("recv", "video", "sfu", rtt=rtt, loss=loss, bitrate=bitrate, score=score),),
        score,
        connected,
        bandwidth=bitrate,
    )


def run(engine: AlertEngine, observations: list[tuple[float, Observation]]):
    out = []
    for at, observation in observations:
        out.extend(engine.evaluate(KEY, observation, at))
    return out


def test_latency_on_an_emergency_call_is_critical_and_raised_within_10_seconds() -> None:
    engine = AlertEngine()
    transitions = run(engine, [(t, obs("emergency", rtt=0.6)) for t in range(0, 12, 2)])
    raised = [t for t in transitions if t.rule == "high_latency" and t.raised]
    assert raised and raised[0].severity == "critical" and raised[0].at <= 10
    assert len(raised) == 1  # raised once while the condition holds


def test_latency_on_a_consultation_is_a_warning() -> None:
    transitions = run(AlertEngine(), [(t, obs(rtt=0.7)) for t in range(0, 10, 2)])
    assert [t.severity for t in transitions if t.rule == "high_latency"] == ["warning"]


def test_a_blip_shorter_than_raise_after_raises_nothing() -> None:
    transitions = run(AlertEngine(), [(0, obs(rtt=0.9)), (2, obs()), (4, obs(rtt=0.9)), (6, obs())])
    assert transitions == []


def test_clears_only_after_the_condition_stays_away() -> None:
    engine = AlertEngine()
    run(engine, [(t, obs(loss=0.1)) for t in range(0, 6, 2)])
    assert engine.active(KEY) == [("packet_loss", KEY)]
    # A good sample in between does not clear it...
    flapping = run(engine, [(6, obs()), (8, obs(loss=0.1)), (10, obs()), (12, obs(loss=0.1))])
    assert flapping == []
    # ...six good seconds in a row do.
    cleared = run(engine, [(t, obs()) for t in range(14, 24, 2)])
    assert [(t.rule, t.raised) for t in cleared] == [("packet_loss", False)]


def test_low_bandwidth_and_degraded_quality() -> None:
    transitions = run(AlertEngine(), [(t, obs(bitrate=150_000, score=3)) for t in range(0, 8, 2)])
    assert {t.rule for t in transitions if t.raised} == {"low_bandwidth", "quality_degraded"}


def test_connection_lost_during_emergency_is_immediate_and_critical() -> None:
    transitions = run(AlertEngine(), [(0, obs("emergency", connected=False))])
    assert [(t.rule, t.severity) for t in transitions] == [("connection_lost", "critical")]
    assert run(AlertEngine(), [(0, obs("consultation", connected=False))]) == []


def test_forget_drops_a_leaving_participants_state() -> None:
    engine = AlertEngine()
    run(engine, [(t, obs(loss=0.2)) for t in range(0, 6, 2)])
    assert engine.active(KEY) == [("packet_loss", KEY)]
    engine.forget(KEY)
    assert engine.active() == [] and engine.keys() == set()
    # Back with the same loss: the rule needs its full hold time again.
    assert run(engine, [(8, obs(loss=0.2))]) == []
