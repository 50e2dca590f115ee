"""Joining a recording's segments (controlplane/clinical/recording_merge.py) on real
Matroska files cut from one encoded call, as the recorder's overlapping segments
are: the second segment starts at a key frame the first one also holds, and
brings a new track (a screen share)."""

from __future__ import annotations

import io
import itertools
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from controlplane.clinical.recording_merge import Segment, merge

FPS = 30


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A camera (key frame every second) and a tone for 8 s; segment 0 holds 0-4 s,
    segment 1 holds 3-8 s plus a screen share of its own."""
    folder: Path = tmp_path_factory.mktemp("segments")
    full, first, second = folder / "full.mkv", folder / "seg0.mkv", folder / "seg1.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate={FPS}"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", "8", "-c:v", "libvpx", "-g", str(FPS), "-b:v", "200k", "-c:a", "libopus"),
        str(full),
    )
    ffmpeg("-i", str(full), "-t", "4", "-map", "0", "-c", "copy", str(first))
    ffmpeg(
        *("-ss", "3", "-i", str(full), "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FPS}"),
        *("-t", "5", "-map", "0:v", "-map", "0:a", "-map", "1:v"),
        *("-c:v:0", "copy", "-c:a", "copy", "-c:v:1", "libvpx", "-g", str(FPS)),
        str(second),
    )
    return first.read_bytes(), second.read_bytes()


def times(data: bytes) -> dict[int, list[float]]:
    """Seconds of each stream's packets, in file order."""
    found: dict[int, list[float]] = {}
    with av.open(io.BytesIO(data), format="matroska") as container:
        for packet in container.demux():
            if packet.dts is not None and packet.pts is not None:
                seconds = float(packet.pts * Fraction(packet.time_base))
                found.setdefault(packet.stream.index, []).append(seconds)
    return found


def decoded_frames(data: bytes, stream: int) -> int:
    with av.open(io.BytesIO(data), format="matroska") as container:
        return sum(1 for _ in container.decode(container.streams[stream]))


@pytest.mark.parametrize("clock_error_ms", [0, 400, -300])
def test_segments_join_into_one_track_per_producer_in_sync(
    segments: tuple[bytes, bytes], clock_error_ms: int
) -> None:
    """Whatever the node's wall clock said (off by up to 0.4 s here), the camera
    continues across the join without a gap, a repeat or a step back, and the
    screen share starts 3 s in."""
    first, second = segments
    joined = merge(
        [
            Segment(first, 1_000_000, ["camera", "mic"]),
            Segment(second, 1_003_000 + clock_error_ms, ["camera", "mic", "screen"]),
        ]
    )
    found = times(joined)
    with av.open(io.BytesIO(joined), format="matroska") as container:
        kinds = [stream.type for stream in container.streams]
    assert kinds == ["video", "audio", "video"]
    camera, mic, screen = found[0], found[1], found[2]
    assert camera == sorted(camera) and len(set(camera)) == len(camera)
    steps = [b - a for a, b in itertools.pairwise(camera)]
    assert max(steps) < 1.5 / FPS, max(steps)  # no frame missing or repeated
    assert len(camera) == pytest.approx(8 * FPS, abs=2)
    assert decoded_frames(joined, 0) == len(camera)
    assert abs(screen[0] - 3.0) < 0.05 and screen[-1] == pytest.approx(8.0, abs=0.1)
    assert mic == sorted(mic) and mic[-1] == pytest.approx(8.0, abs=0.1)
    assert max(b - a for a, b in itertools.pairwise(mic)) < 0.1


def test_a_lone_segment_is_returned_as_it_is(segments: tuple[bytes, bytes]) -> None:
    first, _ = segments
    assert merge([Segment(first, 0, ["camera", "mic"])]) == first


def test_without_a_shared_key_frame_the_wall_clock_places_the_next_segment(
    segments: tuple[bytes, bytes],
) -> None:
    """Segments that share no packet (the producer was replaced): the node's clock
    places the second one, and the camera track still only moves forward."""
    first, second = segments
    joined = merge(
        [
            Segment(first, 1_000_000, ["camera", "mic"]),
            Segment(second, 1_004_500, ["camera-2", "mic", "screen"]),
        ]
    )
    found = times(joined)
    assert len(found) == 4  # the old and the new camera are separate tracks
    assert found[0][-1] < 4.1 and abs(found[2][0] - 4.5) < 0.05


@pytest.fixture(scope="module")
def replaced(tmp_path_factory: pytest.TempPathFactory, segments: tuple[bytes, bytes]) -> bytes:
    """A second segment that holds, from 3 s, the old camera, the camera that
    replaces it (another picture, as a camera sent again with simulcast layers
    gives), and the mic."""
    folder: Path = tmp_path_factory.mktemp("replaced")
    full, second = folder / "full.mkv", folder / "seg1.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate={FPS}"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", "8", "-c:v", "libvpx", "-g", str(FPS), "-b:v", "200k", "-c:a", "libopus"),
        str(full),
    )
    ffmpeg(
        *("-ss", "3", "-i", str(full), "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FPS}"),
        *("-t", "5", "-map", "0:v", "-map", "1:v", "-map", "0:a"),
        *("-c:v:0", "copy", "-c:a", "copy", "-c:v:1", "libvpx", "-g", str(FPS)),
        str(second),
    )
    return second.read_bytes()


def test_a_camera_sent_again_continues_its_track(
    segments: tuple[bytes, bytes], replaced: bytes
) -> None:
    """The new camera takes the old one's track from its first key frame: one
    video track with no gap, no repeat, no step back, all of it decodable."""
    first, _ = segments
    joined = merge(
        [
            Segment(first, 1_000_000, ["cam-1", "mic"], ["dr/camera", "dr/mic"]),
            Segment(
                replaced,
                1_003_000,
                ["cam-1", "cam-2", "mic"],
                ["dr/camera", "dr/camera", "dr/mic"],
            ),
        ]
    )
    with av.open(io.BytesIO(joined), format="matroska") as container:
        assert [stream.type for stream in container.streams] == ["video", "audio"]
    camera = times(joined)[0]
    assert camera == sorted(camera) and len(set(camera)) == len(camera)
    assert max(b - a for a, b in itertools.pairwise(camera)) < 1.5 / FPS
    assert len(camera) == pytest.approx(8 * FPS, abs=2)
    assert decoded_frames(joined, 0) == len(camera)
    # Without track names, the old and the new camera stay two tracks.
    apart = merge(
        [
            Segment(first, 1_000_000, ["cam-1", "mic"]),
            Segment(replaced, 1_003_000, ["cam-1", "cam-2", "mic"]),
        ]
    )
    assert len(times(apart)) == 3


def audio_packets(data: bytes) -> list[tuple[int, int, bytes]]:
    """(dts, duration, bytes) of the first audio stream's packets, in ms."""
    with av.open(io.BytesIO(data), format="matroska") as container:
        audio = container.streams.audio[0]
        return [(p.dts, p.duration, bytes(p)) for p in container.demux(audio) if p.size]


@pytest.mark.parametrize("audio_ms", [7, -7, 13])
def test_audio_across_the_join_neither_repeats_nor_overlaps(
    segments: tuple[bytes, bytes], tmp_path: Path, audio_ms: int
) -> None:
    """Each segment's ffmpeg re-bases its streams on its own first sender report,
    so the next segment's audio can sit a few ms off where its video places it:
    it would repeat the packets written last (a few ms later) or overlap them,
    on which decoders stumble (ffmpeg: "non monotonically increasing dts").  The
    joined mic has every packet once, none overlapping the one before."""
    first, second = segments
    source, shifted = tmp_path / "seg1.mkv", tmp_path / "shifted.mkv"
    source.write_bytes(second)
    ffmpeg("-i", str(source), "-map", "0", "-c", "copy",
           "-bsf:a", f"setts=ts=TS+({audio_ms})", str(shifted))  # fmt: skip
    joined = merge(
        [
            Segment(first, 1_000_000, ["camera", "mic"]),
            Segment(shifted.read_bytes(), 1_003_000, ["camera", "mic", "screen"]),
        ]
    )
    mic = audio_packets(joined)
    payloads = [payload for _, _, payload in mic]
    assert len(set(payloads)) == len(payloads) == pytest.approx(8 * 50, abs=2)
    for (dts, duration, _), (after, _, _) in itertools.pairwise(mic):
        assert after >= dts + duration, (dts, after)
    path = tmp_path / "joined.mkv"
    path.write_bytes(joined)
    check = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0",
         "-enc_time_base", "-1", "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (check.returncode, check.stderr.strip()) == (0, "")
