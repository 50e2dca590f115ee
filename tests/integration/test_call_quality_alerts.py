"""Call quality under real impairment: the /metrics endpoint scraped and parsed,
packet loss injected on loopback (nftables numgen drop on the test SFU's media
ports) raising the loss alert (stored, counted, pushed to the staff channel)
and clearing it when the loss stops."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id
from tests.integration.api_client import Api
from tests.integration.test_client_stats import _report
from tests.integration.test_consultation_media import _start_pair

pytestmark = pytest.mark.integration

TABLE = "telemed_test_loss"
ALLOWED_LABELS = {
    "generation",  # of the garbage collector: 0, 1 or 2
    "call_type",
    "kind",
    "source",
    "direction",
    "event",
    "code",
    "rule",
    "severity",
    "node",
    # TURN servers (configured infrastructure, like SFU nodes) and udp/tcp/tls.
    "server",
    "transport",
    # The audit chain's verification (incremental, full) and retention's data classes.
    "scope",
    "data_class",
    "le",
    "quantile",
}


async def scrape(stack: Stack) -> dict[str, list]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def packet_loss() -> Iterator[dict]:
    def start(percent_mod: int = 10) -> None:
        subprocess.run(["nft", "add", "table", "inet", TABLE], check=True)
        subprocess.run(
            [
                "nft",
                "add",
                "chain",
                "inet",
                TABLE,
                "input",
                "{ type filter hook input priority 0; }",
            ],
            check=True,
        )
        subprocess.run(
            [
                "nft",
                "add",
                "rule",
                "inet",
                TABLE,
                "input",
                "iif",
                "lo",
                "udp",
                "dport",
                "45000-45999",
                "numgen",
                "random",
                "mod",
                str(percent_mod),
                "==",
                "0",
                "drop",
            ],
            check=True,
        )

    def stop() -> None:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)

    try:
        yield {"start": start, "stop": stop}
    finally:
        stop()


async def test_metrics_are_exported_in_base_units_without_per_room_labels(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id()
    _doctor, patient = await _start_pair(stack, peers, room)
    await patient.wait_for_frames("dr-ana", "video", count=10)
    await asyncio.sleep(5)  # two sampling intervals

    samples = await scrape(stack)
    assert total(samples, "telemed_jitter_seconds_count", source="sfu", direction="send") > 0
    assert total(samples, "telemed_packet_loss_ratio_count", source="sfu") > 0
    assert total(samples, "telemed_rtt_seconds_count", source="sfu", direction="recv") > 0
    assert total(samples, "telemed_active_consultations") >= 1
    assert total(samples, "telemed_participants") >= 2
    assert total(samples, "telemed_sfu_nodes") == 1
    assert total(samples, "telemed_sfu_workers", node="sfu-test-1") >= 1
    assert total(samples, "telemed_signaling_requests_total", event="join") >= 2
    assert total(samples, "telemed_stats_sampling_seconds_count") > 0
    # RTT on loopback is small and in seconds, not milliseconds.
    rtt_sum = total(samples, "telemed_rtt_seconds_sum", source="sfu")
    rtt_count = total(samples, "telemed_rtt_seconds_count", source="sfu")
    assert 0 < rtt_sum / rtt_count < 0.2
    for name, values in samples.items():
        if name.startswith("telemed_"):
            for sample in values:
                assert set(sample.labels) <= ALLOWED_LABELS, (name, sample.labels)


async def test_packet_loss_raises_and_clears_the_loss_alert(
    stack: Stack, peers: list[MediaPeer], packet_loss
) -> None:
    staff = socketio.AsyncClient(reconnection=False)
    events: list[tuple[str, dict]] = []
    staff.on("alert", lambda data: events.append(("alert", data)), namespace="/staff")
    staff.on("alertCleared", lambda data: events.append(("cleared", data)), namespace="/staff")
    await staff.connect(
        stack.url,
        namespaces=["/staff"],
        transports=["websocket"],
        auth={"token": stack.tokens.mint_api(subject="tech-1", role="admin", clinic="clinic-1")},
    )
    try:
        room = new_room_id()
        _doctor, patient = await _start_pair(stack, peers, room)
        await patient.wait_for_frames("dr-ana", "audio", count=10)
        before = await scrape(stack)

        packet_loss["start"](10)  # ~10% of the packets reaching the SFU are dropped
        raised = None
        for _ in range(150):
            raised = next(
                (
                    d
                    for kind, d in events
                    if kind == "alert" and d["rule"] == "packet_loss" and d["roomId"] == room
                ),
                None,
            )
            if raised:
                break
            await asyncio.sleep(0.2)
        assert raised is not None, f"no packet_loss alert; events: {events}"
        assert raised["severity"] == "warning"  # a consultation, not an emergency
        row = stack.psql(
            f"SELECT count(*) FROM alerts WHERE room_id = '{room}' "
            "AND rule = 'packet_loss' AND cleared_at IS NULL"
        )
        assert int(row) >= 1
        after = await scrape(stack)
        assert total(after, "telemed_alerts_total", rule="packet_loss") > total(
            before, "telemed_alerts_total", rule="packet_loss"
        )
        # The loss shows in the histogram: observations above 5%.
        above = total(after, "telemed_packet_loss_ratio_count", source="sfu") - total(
            after, "telemed_packet_loss_ratio_bucket", source="sfu", le="0.05"
        )
        above_before = total(before, "telemed_packet_loss_ratio_count", source="sfu") - total(
            before, "telemed_packet_loss_ratio_bucket", source="sfu", le="0.05"
        )
        assert above > above_before

        packet_loss["stop"]()

        def keys(kind: str) -> set[str]:
            return {
                d["participantId"]
                for k, d in events
                if k == kind and d["rule"] == "packet_loss" and d["roomId"] == room
            }

        for _ in range(200):
            if keys("alert") and keys("alert") <= keys("cleared"):
                break
            await asyncio.sleep(0.2)
        assert keys("alert") <= keys("cleared"), "alerts did not clear after the loss stopped"
        assert (
            stack.psql(
                f"SELECT count(*) FROM alerts WHERE room_id = '{room}' "
                "AND rule = 'packet_loss' AND cleared_at IS NULL"
            )
            == "0"
        )
    finally:
        await staff.disconnect()


@pytest.mark.parametrize("role", ["patient", "physician", "coordinator"])
async def test_staff_channel_is_for_technical_staff_only(stack: Stack, role: str) -> None:
    staff = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await staff.connect(
            stack.url,
            namespaces=["/staff"],
            transports=["websocket"],
            auth={"token": stack.tokens.mint_api(subject="someone", role=role, clinic="clinic-1")},
            wait_timeout=5,
        )


async def test_quality_and_network_detail_per_session(stack: Stack, peers: list[MediaPeer]) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(stack, http)
        session, physician, patient = await api.active_session()
        tokens = {}
        for subject, role in ((physician, "physician"), (patient, "patient")):
            issued = await api.call(
                "POST", f"session/{session['sessionId']}/room-token", api.token(subject, role)
            )
            tokens[subject] = issued.body["token"]
        doctor = MediaPeer(stack.url, tokens[physician])
        sick = MediaPeer(stack.url, tokens[patient])
        peers.extend([doctor, sick])
        for peer in (doctor, sick):
            await peer.connect()
            await peer.join(session["roomId"])
            await peer.start_sending()
        for peer in (doctor, sick):
            await peer.start_receiving()
        await doctor.wait_for_frames(patient, "video", count=10)
        await asyncio.sleep(9)  # a calm consultation is sampled every 6 s

        coordinator = api.token("coord-1", "coordinator")
        quality = await api.call(
            "GET", f"metrics/quality?sessionId={session['sessionId']}", coordinator
        )
        assert quality.status == 200
        by_id = {p["participantId"]: p for p in quality.body["participants"]}
        assert set(by_id) == {physician, patient}
        latest = by_id[patient]["latest"]
        assert latest is not None and 0 <= latest["score"] <= 10 and latest["loss"] < 0.05
        assert len(by_id[patient]["history"]) >= 2
        # RTT is known once RTCP sender and receiver reports went round; a sample
        # taken before has none (a calm consultation is sampled every 6 s).
        for _ in range(15):
            network = await api.call(
                "GET",
                f"metrics/network?sessionId={session['sessionId']}",
                api.token(physician, "physician"),
            )
            assert network.status == 200
            participants = {p["participantId"]: p for p in network.body["participants"]}
            net = participants[physician]["latest"]
            if net["rtt"] is not None:
                break
            await asyncio.sleep(1.0)
        assert 0 < net["rtt"] < 0.2 and net["receiveBitrate"] > 0, net
        refused = await api.call(
            "GET",
            f"metrics/quality?sessionId={session['sessionId']}",
            api.token(patient, "patient"),
        )
        assert refused.code == "NOT_FOUND"


async def test_staff_hear_the_alerts_of_their_own_clinic_only(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    heard: dict[str, list[dict]] = {"clinic-1": [], "clinic-2": []}
    channels = []
    for clinic, events in heard.items():
        staff = socketio.AsyncClient(reconnection=False)
        staff.on("alert", events.append, namespace="/staff")
        await staff.connect(
            stack.url,
            namespaces=["/staff"],
            transports=["websocket"],
            auth={
                "token": stack.tokens.mint_api(
                    subject=f"tech-{clinic}", role="admin", clinic=clinic
                )
            },
        )
        channels.append(staff)
    try:
        room = new_room_id()
        doctor, _patient = await _start_pair(stack, peers, room)  # a clinic-1 session
        for _ in range(8):  # the physician's browser reports a 900 ms round trip
            await doctor.request("reportStats", _report(doctor.producers["camera"].id, rtt=0.9))
            await asyncio.sleep(1.0)
        mine = [e for e in heard["clinic-1"] if e["roomId"] == room]
        assert [(e["rule"], e["clinicId"]) for e in mine] == [("high_latency", "clinic-1")]
        assert heard["clinic-2"] == []
    finally:
        for staff in channels:
            await staff.disconnect()
