"""telemed_client: join a telemed consultation from a Python process.

A participant with a room token connects over Socket.IO, joins its room, sends
audio and video and receives the others', speaking only the documented protocol
(docs/signaling.md); it imports nothing from the server.  Tests, benchmarks,
synthetic quality probes and bots (a transcriber, a recorder) are built on it.
See docs/python-client.md.
"""

from telemed_client.events import PeerEvent
from telemed_client.media import PatternVideoTrack, SilentTrack, ToneAudioTrack, audio_rms
from telemed_client.network import restrict_ice_host_addresses
from telemed_client.peer import MediaPeer, share_screen
from telemed_client.protocol import SignalingError
from telemed_client.receiving import ReceivedTrack

__all__ = [
    "MediaPeer",
    "PatternVideoTrack",
    "PeerEvent",
    "ReceivedTrack",
    "SignalingError",
    "SilentTrack",
    "ToneAudioTrack",
    "audio_rms",
    "restrict_ice_host_addresses",
    "share_screen",
]
