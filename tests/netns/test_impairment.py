"""Real network impairment between the SFU and a peer in its own network
namespace: 600 ms of delay, 10% loss and a 200 kbps cap, observed through the
scraped /metrics, the staff alert channel and the fallback ladder; and a media
blackout long enough to end the peer's ICE connections, after which it joins
again by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import socketio

from telemed_client import MediaPeer
from tests.conftest import new_room_id
from tests.integration.test_call_quality_alerts import scrape, total
from tests.integration.test_media_failure_rejoin import _new_frames
from tests.netns.conftest import Netns
from tests.network_namespace import HOST_IP, sh

pytestmark = pytest.mark.integration


class Staff:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict, float]] = []

    def matching(self, kind: str, rule: str, room: str) -> list[tuple[dict, float]]:
        return [
            (d, at)
            for k, d, at in self.events
            if k == kind
            and d["rule"] == rule
            and d["roomId"] == room
            and d["participantId"] == "pt-ns"
        ]

    async def wait(self, kind: str, rule: str, room: str, timeout: float) -> tuple[dict, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.matching(kind, rule, room):
                return found[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {kind} {rule} within {timeout} s: {self.events}")


@pytest.fixture
async def staff(netns: Netns) -> AsyncIterator[Staff]:
    watcher = Staff()
    client = socketio.AsyncClient(reconnection=False)
    client.on(
        "alert", lambda d: watcher.events.append(("alert", d, time.monotonic())), namespace="/staff"
    )
    client.on(
        "alertCleared",
        lambda d: watcher.events.append(("cleared", d, time.monotonic())),
        namespace="/staff",
    )
    await client.connect(
        netns.control.url,
        namespaces=["/staff"],
        transports=["websocket"],
        auth={
            "token": netns.stack.tokens.mint_api(subject="tech-ns", role="admin", clinic="clinic-1")
        },
    )
    yield watcher
    await client.disconnect()


async def _call(netns: Netns, peers: list[MediaPeer], ns_peer_factory, call_type: str):
    room = new_room_id("ns")
    stack = netns.stack
    doctor = MediaPeer(
        netns.control.url, stack.token(room, "dr-ns", "physician", call_type=call_type)
    )
    peers.append(doctor)
    await doctor.connect()
    await doctor.join(room)
    await doctor.start_sending()
    await doctor.start_receiving()
    patient = await ns_peer_factory(
        stack.token(room, "pt-ns", "patient", call_type=call_type), room, "dr-ns"
    )
    await doctor.wait_for_frames("pt-ns", "video", count=10)
    # The patient's media really crosses the veth.
    snapshot = await doctor.request("getRouterRtpCapabilities")
    assert snapshot["routerRtpCapabilities"]["codecs"]
    return room, doctor, patient


async def test_600ms_delay_raises_the_emergency_latency_alert_within_10s_and_clears(
    netns: Netns, peers, ns_peer_factory, staff: Staff
) -> None:
    room, _doctor, patient = await _call(netns, peers, ns_peer_factory, "emergency")
    reply = await patient.command("delay 0.6")
    assert reply["connections"] >= 1
    started = time.monotonic()
    raised, at = await staff.wait("alert", "high_latency", room, timeout=15)
    assert raised["severity"] == "critical"
    assert at - started <= 10.0, f"raised {at - started:.1f} s after the delay began"
    metrics = await scrape(netns.control)
    slow = total(metrics, "telemed_rtt_seconds_count", call_type="emergency") - total(
        metrics, "telemed_rtt_seconds_bucket", call_type="emergency", le="0.5"
    )
    assert slow > 0, "no RTT sample above 500 ms in the histogram"
    # The ladder's relay rung: RTT above 300 ms for 4 s -> restart ICE through TURN,
    # with credentials for the TURN server this peer can reach.
    for _ in range(20):
        advice = (await patient.command("frames"))["relay_advice"]
        if advice:
            break
        await asyncio.sleep(0.5)
    assert len(advice) == 1, advice
    assert advice[0]["iceServers"][0]["urls"][0].startswith(f"turn:{HOST_IP}:")
    await patient.command("delay 0")
    await staff.wait("cleared", "high_latency", room, timeout=30)


async def test_10_percent_loss_shows_in_the_histogram_and_raises_the_loss_rule(
    netns: Netns, peers, ns_peer_factory, staff: Staff
) -> None:
    room, _doctor, _patient = await _call(netns, peers, ns_peer_factory, "consultation")
    before = await scrape(netns.control)
    table = f"tmloss{netns.host_if[-6:]}"
    sh("nft", "add", "table", "inet", table)
    try:
        sh("nft", "add", "chain", "inet", table, "input", "{ type filter hook input priority 0; }")
        sh(
            "nft",
            "add",
            "rule",
            "inet",
            table,
            "input",
            "iifname",
            netns.host_if,
            "udp",
            "dport",
            "48000-48999",
            "numgen",
            "random",
            "mod",
            "10",
            "==",
            "0",
            "drop",
        )
        raised, _ = await staff.wait("alert", "packet_loss", room, timeout=40)
        assert raised["severity"] == "warning"
        after = await scrape(netns.control)

        def lossy(samples: dict) -> float:
            return total(samples, "telemed_packet_loss_ratio_count", source="sfu") - total(
                samples, "telemed_packet_loss_ratio_bucket", source="sfu", le="0.05"
            )

        assert lossy(after) > lossy(before)
        assert total(after, "telemed_alerts_total", rule="packet_loss") >= 1
    finally:
        sh("nft", "delete", "table", "inet", table, check=False)
    await staff.wait("cleared", "packet_loss", room, timeout=40)


async def test_200kbps_cap_goes_audio_only_and_back(
    netns: Netns, peers, ns_peer_factory, staff: Staff
) -> None:
    _room, doctor, patient = await _call(netns, peers, ns_peer_factory, "consultation")
    # tbf on the host side of the veth shapes everything sent to the namespace.
    sh(
        "tc",
        "qdisc",
        "add",
        "dev",
        netns.host_if,
        "root",
        "tbf",
        "rate",
        "200kbit",
        "burst",
        "16kb",
        "latency",
        "400ms",
    )
    try:
        told = await doctor.wait_for_event(
            "peerMediaFallback",
            lambda d: d["peerId"] == "pt-ns" and d["mode"] == "audio_only",
            timeout=60,
        )
        assert told["mode"] == "audio_only"
        # The patient's own notice crosses the shaped veth too: it may come later.
        for _ in range(40):
            state = await patient.command("frames")
            if any(f["mode"] == "audio_only" for f in state["fallbacks"]):
                break
            await asyncio.sleep(0.5)
        assert any(f["mode"] == "audio_only" for f in state["fallbacks"]), state
    finally:
        sh("tc", "qdisc", "del", "dev", netns.host_if, "root", check=False)
    await doctor.wait_for_event(
        "peerMediaFallback", lambda d: d["peerId"] == "pt-ns" and d["mode"] == "normal", timeout=60
    )
    # A probe may still see the cap's last losses and step back once before it holds.
    first = (await patient.command("frames"))["video"]
    latest = first
    for _ in range(80):
        await asyncio.sleep(0.5)
        latest = (await patient.command("frames"))["video"]
        if latest > first + 15:
            break
    assert latest > first + 15, "video did not come back"
    assert HOST_IP  # (the SFU's media address on the veth)


async def _frames_until(patient, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    reply: dict = {}
    while time.monotonic() < deadline:
        reply = await patient.command("frames")
        if done(reply):
            return reply
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {reply}")


async def test_a_media_blackout_ends_the_peers_transports_and_it_rejoins_once_back(
    netns: Netns, peers, ns_peer_factory
) -> None:
    """All UDP in and out of the namespace dropped (signaling, over TCP, goes on):
    aioice's consent checks go unanswered and it ends the connections (about 30 s);
    the peer records the failure, and once the network is back it is in the call
    again by itself, decoding and decoded, with nothing in its errors."""
    _room, doctor, patient = await _call(netns, peers, ns_peer_factory, "consultation")
    at_doctor = {t.consumer_id for t in doctor.received.values()}
    table = f"tmdark{netns.host_if[-6:]}"
    blackout = (
        f"table inet {table} {{\n"
        "  chain input { type filter hook input priority 0; meta l4proto udp drop; }\n"
        "  chain output { type filter hook output priority 0; meta l4proto udp drop; }\n"
        "}\n"
    )
    rules = netns.stack.data_dir / f"{table}.nft"
    rules.write_text(blackout)
    sh("ip", "netns", "exec", netns.name, "nft", "-f", str(rules))
    started = time.monotonic()
    try:
        failed = await _frames_until(patient, lambda r: r["media_failed"], timeout=60)
    finally:
        sh("ip", "netns", "exec", netns.name, "nft", "delete", "table", "inet", table, check=False)
    dark = time.monotonic() - started
    back = await _frames_until(
        patient, lambda r: r["rejoined"] and r["video_tracks"] >= 2 and r["video"] >= 10, 60
    )
    await _new_frames(doctor, "pt-ns", at_doctor, timeout=40)
    assert back["errors"] == [] and doctor.errors == []
    print(f"media failure seen {dark:.1f} s into the blackout: {failed['media_failed']}")
