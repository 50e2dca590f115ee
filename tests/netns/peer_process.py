"""A Python peer run inside a network namespace (``ip netns exec``) by the
impairment tests.  Joins, sends and receives, then obeys commands on stdin
(``delay <seconds>``, ``frames``, ``quit``) and answers JSON lines on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from telemed_client import MediaPeer, restrict_ice_host_addresses


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--address", required=True, help="the namespace's own address for ICE")
    parser.add_argument("--from-peer", required=True, help="whose media to count")
    args = parser.parse_args()
    restrict_ice_host_addresses([args.address])
    peer = MediaPeer(args.url, args.token)
    try:
        await peer.connect()
        await peer.join(args.room)
        await peer.start_sending()
        await peer.start_receiving()
        await peer.wait_for_frames(args.from_peer, "video", count=10, timeout=20)
        say(event="ready")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            command, _, value = line.partition(" ")
            if command == "delay":
                say(event="delay", connections=peer.set_network_delay(float(value)))
            elif command == "frames":
                say(
                    event="frames",
                    **{f"{t.kind}": t.frames for t in peer.tracks_from(args.from_peer)},
                    fallbacks=[e.data for e in peer.events if e.name == "mediaFallback"],
                    relay_advice=[e.data for e in peer.events if e.name == "iceRelayAdvised"],
                    video_tracks=len(peer.tracks_from(args.from_peer, "video")),
                    media_failed=[e.data for e in peer.events if e.name == "mediaFailed"],
                    rejoined=len([e for e in peer.events if e.name == "rejoined"]),
                    errors=peer.errors,
                )
            elif command == "quit":
                break
    except Exception as exc:  # reported to the test, which fails with it
        say(event="error", error=f"{type(exc).__name__}: {exc}", errors=peer.errors)
    finally:
        await peer.close()


if __name__ == "__main__":
    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)
    asyncio.run(main())
