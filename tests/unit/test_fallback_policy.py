"""The fallback ladder's decisions over time."""

from __future__ import annotations

from controlplane.telemetry.fallback_policy import FallbackPolicy

KEY = ("room", "pt")


def feed(policy: FallbackPolicy, start: float, end: float, **inputs):
    actions = []
    t = start
    while t < end:
        for action in policy.evaluate(
            KEY, now=t, **{"bandwidth": None, "send_loss": None, "rtt": None, **inputs}
        ):
            actions.append((t, action.kind))
        t += 1.0
    return actions


def test_low_bandwidth_goes_audio_only_then_probes_and_recovers() -> None:
    policy = FallbackPolicy(hold=4, recover_after=6, probe_after=10)
    assert feed(policy, 0, 3, bandwidth=180_000) == []  # not yet: must hold 4 s
    actions = feed(policy, 3, 6, bandwidth=180_000)
    assert [kind for _, kind in actions] == ["audio_only"]
    assert policy.mode(KEY) == "audio_only"
    # Still capped: the probe resumes video, sees it does not fit, goes back.
    actions = feed(policy, 6, 22, bandwidth=150_000)
    assert [kind for _, kind in actions] == ["restore_video", "audio_only"]
    # Back to audio only at t=19; the next probe waits 20 s: capacity returns meanwhile.
    assert feed(policy, 22, 39, bandwidth=900_000) == []
    actions = feed(policy, 39, 60, bandwidth=900_000)
    assert [kind for _, kind in actions] == ["restore_video"]
    assert policy.mode(KEY) == "normal"


def test_loss_lowers_the_send_cap_and_restores_it() -> None:
    policy = FallbackPolicy(hold=4, recover_after=6)
    actions = feed(policy, 0, 8, send_loss=0.1)
    assert [kind for _, kind in actions] == ["reduce_bitrate"]
    assert feed(policy, 8, 12, send_loss=0.01) == []  # not yet
    assert [kind for _, kind in feed(policy, 12, 16, send_loss=0.0)] == ["restore_bitrate"]


def test_relay_advised_only_when_turn_is_configured() -> None:
    assert feed(FallbackPolicy(hold=2), 0, 10, rtt=0.4) == []
    advised = feed(FallbackPolicy(hold=2, relay_available=True), 0, 10, rtt=0.4)
    assert [kind for _, kind in advised] == ["advise_relay"]  # once


def test_a_simulcast_subscriber_keeps_a_small_picture_down_to_150_kbps() -> None:
    """Receiving layers, 180 kbps still carries the 320x180 layer and audio: no
    audio-only; under 150 kbps video goes, after twice the hold (the SFU first moves
    it to the smallest layer)."""
    policy = FallbackPolicy(hold=4, recover_after=6, probe_after=10)
    assert feed(policy, 0, 20, bandwidth=180_000, layered=True) == []
    actions = feed(policy, 20, 35, bandwidth=120_000, layered=True)
    assert actions == [(28.0, "audio_only")]
    # The same 180 kbps without layers is audio only after the plain hold.
    other = FallbackPolicy(hold=4, recover_after=6, probe_after=10)
    assert feed(other, 0, 10, bandwidth=180_000) == [(4.0, "audio_only")]
