"""Debian's Chromium as the browser tests and benchmarks drive it (through
playwright, never `playwright install`): headless, fake camera, microphone and
screen, WebRTC allowed on loopback."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # WebRTC host candidates on loopback (the SFU announces 127.0.0.1).
    "--allow-loopback-in-peer-connection",
]
