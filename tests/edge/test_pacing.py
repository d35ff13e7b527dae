"""Video files are timed and paced by their own presentation timestamps (``capture.VideoSource``), on real
files made here with PyAV: variable frame timing (H.264 in Matroska and MP4), a raw H.264 stream whose
frames carry no timestamps, and two MPEG-TS recordings joined end to end (timestamps jump back)."""

from __future__ import annotations

import time
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vigint_edge.capture.source import VideoSource
from vigint_edge.config import CameraConfig

# Irregular gaps, as a camera that records on motion or drops frames writes them: 50 ms, then 0.8 s, then 0.75 s.
VFR_TIMES = [0.0, 0.05, 0.1, 0.9, 0.95, 1.0, 1.75, 1.8]


def _write(path: Path, times: list[float], fmt: str) -> Path:
    """An H.264 file (160x120, a different grey per frame) whose frame ``i`` is presented at ``times[i]`` s."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), (30 * i) % 250, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _source(path: Path, realtime: bool = False) -> VideoSource:
    return VideoSource(CameraConfig(id="door", source=str(path), realtime=realtime))


@pytest.mark.parametrize("fmt, suffix", [("matroska", "mkv"), ("mp4", "mp4")])
def test_a_variable_frame_rate_file_is_timed_by_its_presentation_timestamps(tmp_path, fmt, suffix):
    path = _write(tmp_path / f"vfr.{suffix}", VFR_TIMES, fmt)
    source = _source(path)
    frames = list(source.frames())

    assert [f.index for f in frames] == list(range(len(VFR_TIMES)))
    assert [f.t for f in frames] == pytest.approx(VFR_TIMES, abs=1e-6)
    assert [(f.wall - frames[0].wall) / timedelta(seconds=1) for f in frames] == pytest.approx(VFR_TIMES, abs=1e-5)
    assert sum(len(f.packets) for f in frames) == len(frames), "the frames still bring every packet (remuxing)"
    # The file is one a frame count over its average rate mistimes (the old pacing).
    assert [i / source.fps for i in range(len(frames))] != pytest.approx(VFR_TIMES, abs=0.05)


def test_realtime_pacing_waits_for_each_frame_of_a_variable_frame_rate_file(tmp_path):
    """Lower bounds only: each frame comes no earlier than its timestamp after the start, so the whole file
    takes at least its duration (a loaded machine may make it later, never earlier)."""
    path = _write(tmp_path / "vfr.mkv", VFR_TIMES, "matroska")
    source = _source(path, realtime=True)
    start = time.monotonic()
    arrived = [(time.monotonic() - start, f.t) for f in source.frames()]
    assert [t for _, t in arrived] == pytest.approx(VFR_TIMES, abs=1e-6)
    for (at, t), expected in zip(arrived, VFR_TIMES):
        assert at >= expected - 1e-3, f"frame at {expected} s came {expected - at:.3f} s early"
    assert arrived[-1][0] >= VFR_TIMES[-1] - 1e-3


def test_frames_without_timestamps_follow_one_another_at_the_nominal_rate(tmp_path):
    """A raw H.264 elementary stream has no container timestamps: its frames decode without a pts and are put
    ``1 / fps`` apart (FFmpeg's 25 fps default for raw H.264)."""
    path = _write(tmp_path / "raw.h264", VFR_TIMES, "h264")
    with av.open(str(path)) as probe:
        assert all(f.pts is None for f in probe.decode(video=0)), "the fixture really has no timestamps"
    source = _source(path)
    frames = list(source.frames())
    assert len(frames) == len(VFR_TIMES) and source.fps > 0
    assert [f.t for f in frames] == pytest.approx([i / source.fps for i in range(len(frames))], abs=1e-6)


def test_timestamps_that_jump_back_keep_the_clock_increasing(tmp_path):
    """Two MPEG-TS recordings joined end to end (``cat a.ts b.ts``): the second's timestamps start again.
    It follows the first at one nominal frame interval and keeps its own gaps; time never goes back."""
    part = _write(tmp_path / "part.ts", VFR_TIMES, "mpegts").read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part + part)
    source = _source(joined)
    frames = list(source.frames())
    step = 1.0 / source.fps
    second = [VFR_TIMES[-1] + step + t for t in VFR_TIMES]
    assert [f.t for f in frames] == pytest.approx(VFR_TIMES + second, abs=1e-4)
    assert all(b.t > a.t for a, b in zip(frames, frames[1:]))
