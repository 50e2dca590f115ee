"""600 ms of added delay on an emergency call: the latency alert is raised as
critical within 10 s and clears once the delay is removed.  The delay is real:
the patient's datagrams leave 600 ms late (a delaying wrapper around its ICE
datagram transport)."""

from __future__ import annotations

import asyncio
import time

import pytest
import socketio

from telemed_client import MediaPeer
from tests.conftest import Stack, new_room_id, start_call

pytestmark = pytest.mark.integration


async def test_added_delay_raises_the_critical_latency_alert_and_it_clears(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    staff = socketio.AsyncClient(reconnection=False)
    events: list[tuple[str, dict, float]] = []
    staff.on("alert", lambda d: events.append(("alert", d, time.monotonic())), namespace="/staff")
    staff.on(
        "alertCleared",
        lambda d: events.append(("cleared", d, time.monotonic())),
        namespace="/staff",
    )
    await staff.connect(
        stack.url,
        namespaces=["/staff"],
        transports=["websocket"],
        auth={"token": stack.tokens.mint_api(subject="tech-2", role="admin", clinic="clinic-1")},
    )
    try:
        room = new_room_id("er")
        doctor = MediaPeer(
            stack.url, stack.token(room, "dr-er", "physician", call_type="emergency")
        )
        patient = MediaPeer(stack.url, stack.token(room, "pt-er", "patient", call_type="emergency"))
        peers.extend([doctor, patient])
        for peer in (doctor, patient):
            await peer.connect()
            info = await peer.join(room)
            assert info["callType"] == "emergency"
            await peer.start_sending()
        for peer in (doctor, patient):
            await peer.start_receiving()
        await patient.wait_for_frames("dr-er", "video", count=10)

        assert patient.set_network_delay(0.6) >= 1
        started = time.monotonic()

        def latency(kind: str) -> list[tuple[dict, float]]:
            return [
                (d, at)
                for k, d, at in events
                if k == kind
                and d["rule"] == "high_latency"
                and d["roomId"] == room
                and d["participantId"] == "pt-er"
            ]

        for _ in range(100):
            if latency("alert"):
                break
            await asyncio.sleep(0.1)
        assert latency("alert"), f"no latency alert: {events}"
        raised, at = latency("alert")[0]
        assert raised["severity"] == "critical" and raised["callType"] == "emergency"
        assert at - started <= 10.0, f"raised {at - started:.1f} s after the delay began"
        assert (
            int(
                stack.psql(
                    f"SELECT count(*) FROM alerts WHERE room_id = '{room}' "
                    "AND rule = 'high_latency' "
                    "AND severity = 'critical' AND cleared_at IS NULL"
                )
            )
            >= 1
        )

        patient.set_network_delay(0)
        for _ in range(200):
            if latency("cleared"):
                break
            await asyncio.sleep(0.1)
        assert latency("cleared"), "the latency alert did not clear after the delay was removed"
    finally:
        await staff.disconnect()


async def test_alerts_are_posted_to_the_configured_webhook(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    from aiohttp import web

    from controlplane.devstack import services as ls

    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = ls.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    control = await asyncio.to_thread(
        ls.start_control_plane,
        stack.data_dir,
        stack.control_plane_env(TELEMED_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook"),
    )
    try:
        room = new_room_id("wh")
        doctor = MediaPeer(
            control.url, stack.token(room, "dr-wh", "physician", call_type="emergency")
        )
        patient = MediaPeer(
            control.url, stack.token(room, "pt-wh", "patient", call_type="emergency")
        )
        peers.extend([doctor, patient])
        await start_call(room, doctor, patient)
        await patient.wait_for_frames("dr-wh", "video", count=5)
        patient.set_network_delay(0.6)
        for _ in range(150):
            if any(r["event"] == "alert" and r["rule"] == "high_latency" for r in received):
                break
            await asyncio.sleep(0.1)
        posted = [r for r in received if r["event"] == "alert" and r["rule"] == "high_latency"]
        assert posted, f"nothing posted: {received}"
        assert posted[0]["roomId"] == room and posted[0]["severity"] == "critical"
        assert set(posted[0]) >= {"participantId", "sessionId", "callType", "at", "description"}
    finally:
        for peer in peers:  # leave before this control plane goes away
            await peer.close()
        await asyncio.to_thread(control.stop)
        await runner.cleanup()


async def test_leaving_with_an_open_alert_clears_it_and_a_rejoin_starts_afresh(
    stack: Stack, peers: list[MediaPeer]
) -> None:
    room = new_room_id("er")
    doctor = MediaPeer(stack.url, stack.token(room, "dr-lv", "physician", call_type="emergency"))
    patient = MediaPeer(stack.url, stack.token(room, "pt-lv", "patient", call_type="emergency"))
    peers.extend([doctor, patient])
    await start_call(room, doctor, patient)
    await patient.wait_for_frames("dr-lv", "video", count=10)
    patient.set_network_delay(0.6)

    def open_alerts() -> int:
        return int(
            stack.psql(
                f"SELECT count(*) FROM alerts WHERE room_id = '{room}' "
                "AND participant_id = 'pt-lv' AND cleared_at IS NULL"
            )
        )

    for _ in range(150):
        if open_alerts():
            break
        await asyncio.sleep(0.1)
    assert open_alerts() >= 1, "no alert was raised for the delayed patient"

    await patient.leave()  # still delayed: the condition never went away
    await doctor.wait_for_event("peerLeft", lambda d: d["peerId"] == "pt-lv")
    for _ in range(30):
        if not open_alerts():
            break
        await asyncio.sleep(0.1)
    assert open_alerts() == 0
    reasons = stack.psql(
        f"SELECT DISTINCT clear_reason FROM alerts WHERE room_id = '{room}' "
        "AND participant_id = 'pt-lv'"
    )
    assert reasons == "participant_left"

    # Back in the call with a clean path: no alert, nothing carried over.
    again = MediaPeer(stack.url, stack.token(room, "pt-lv", "patient", call_type="emergency"))
    peers.append(again)
    await again.connect()
    await again.join(room)
    await again.start_sending()
    await again.start_receiving()
    await again.wait_for_frames("dr-lv", "video", count=10)
    await asyncio.sleep(6.0)  # longer than any rule's hold time
    assert open_alerts() == 0
