"""The fallback ladder, as decisions (pure logic, no I/O).

Per participant:
- its downlink bandwidth (the SFU's estimate of what it can send to it) under
  256 kbps for ``hold`` seconds -> audio only: its video consumers are paused.  A
  participant receiving simulcast cameras has a lower floor (150 kbps: a 320x180
  layer and Opus) and twice the hold: the SFU moves it to smaller layers first
  (layers.py), and a small picture beats none;
- audio only cannot show that video fits again, so after ``probe_after`` seconds
  video is tried again ("probing"); bandwidth back over the threshold for
  ``recover_after`` seconds -> normal, under it again -> audio only, with the next
  probe later (doubling up to ``max_probe_after``);
- loss above 5% on what it sends for ``hold`` seconds -> its send bitrate cap is
  lowered; restored after ``recover_after`` seconds without loss;
- RTT above 300 ms for ``hold`` seconds -> advise an ICE restart through a TURN
  relay (only when TURN is configured).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOW_BANDWIDTH = 256_000
SIMULCAST_FLOOR = 150_000
HIGH_LOSS = 0.05
HIGH_RTT = 0.3


@dataclass(frozen=True)
class Action:
    kind: str  # audio_only | restore_video | reduce_bitrate | restore_bitrate | advise_relay
    reason: str


@dataclass
class _PeerState:
    mode: str = "normal"  # normal | audio_only | probing
    bitrate_reduced: bool = False
    relay_advised: bool = False
    low_since: float | None = None
    good_since: float | None = None
    audio_only_since: float | None = None
    probe_after: float = 0.0
    loss_since: float | None = None
    no_loss_since: float | None = None
    rtt_since: float | None = None


@dataclass
class FallbackPolicy:
    hold: float = 4.0
    recover_after: float = 6.0
    probe_after: float = 10.0
    max_probe_after: float = 60.0
    relay_available: bool = False
    _peers: dict[tuple[str, str], _PeerState] = field(default_factory=dict)

    def mode(self, key: tuple[str, str]) -> str:
        return self._peers.get(key, _PeerState()).mode

    def keys(self) -> set[tuple[str, str]]:
        return set(self._peers)

    def forget(self, key: tuple[str, str]) -> None:
        self._peers.pop(key, None)

    def evaluate(
        self,
        key: tuple[str, str],
        *,
        bandwidth: float | None,
        send_loss: float | None,
        rtt: float | None,
        now: float,
        layered: bool = False,
    ) -> list[Action]:
        """``layered``: the participant receives simulcast cameras."""
        state = self._peers.setdefault(key, _PeerState(probe_after=self.probe_after))
        actions: list[Action] = []
        actions += self._bandwidth(state, bandwidth, now, layered)
        actions += self._loss(state, send_loss, now)
        if self.relay_available and not state.relay_advised:
            if rtt is not None and rtt > HIGH_RTT:
                state.rtt_since = now if state.rtt_since is None else state.rtt_since
                if now - state.rtt_since >= self.hold:
                    state.relay_advised = True
                    actions.append(Action("advise_relay", "round-trip time above 300 ms"))
            else:
                state.rtt_since = None
        return actions

    def _bandwidth(
        self, state: _PeerState, bandwidth: float | None, now: float, layered: bool
    ) -> list[Action]:
        if bandwidth is None:
            return []
        floor = SIMULCAST_FLOOR if layered else LOW_BANDWIDTH
        low = bandwidth < floor
        hold = self.hold * 2 if layered else self.hold
        if state.mode == "audio_only":
            since = now if state.audio_only_since is None else state.audio_only_since
            if now - since >= state.probe_after:
                state.mode, state.low_since, state.good_since = "probing", None, None
                return [Action("restore_video", "probing whether video fits again")]
            return []
        if low:
            state.good_since = None
            state.low_since = now if state.low_since is None else state.low_since
            if now - state.low_since >= hold:
                if state.mode == "probing":
                    state.probe_after = min(state.probe_after * 2, self.max_probe_after)
                state.mode, state.audio_only_since, state.low_since = "audio_only", now, None
                reason = (
                    "bandwidth below 256 kbps"
                    if floor is None
                    else (
                        f"bandwidth below {int(floor) // 1000} kbps (the smallest layer and audio)"
                    )
                )
                return [Action("audio_only", reason)]
        else:
            state.low_since = None
            if state.mode == "probing":
                state.good_since = now if state.good_since is None else state.good_since
                if now - state.good_since >= self.recover_after:
                    # Video was already resumed when probing began: nothing more to do.
                    state.mode, state.probe_after = "normal", self.probe_after
        return []

    def _loss(self, state: _PeerState, loss: float | None, now: float) -> list[Action]:
        if loss is None:
            return []
        if loss > HIGH_LOSS:
            state.no_loss_since = None
            if not state.bitrate_reduced:
                state.loss_since = now if state.loss_since is None else state.loss_since
                if now - state.loss_since >= self.hold:
                    state.bitrate_reduced, state.loss_since = True, None
                    return [Action("reduce_bitrate", "packet loss above 5%")]
        else:
            state.loss_since = None
            if state.bitrate_reduced:
                state.no_loss_since = now if state.no_loss_since is None else state.no_loss_since
                if now - state.no_loss_since >= self.recover_after:
                    state.bitrate_reduced, state.no_loss_since = False, None
                    return [Action("restore_bitrate", "packet loss back under 5%")]
        return []
