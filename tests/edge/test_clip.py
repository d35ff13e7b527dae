"""ClipWriter and encode_snapshot: files decoded back with PyAV/OpenCV, boxes of the mp4 read directly."""

from __future__ import annotations

import hashlib
import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vigint_edge.recording.clip import ClipError, ClipWriter, encode_snapshot


def top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level ISO-BMFF boxes, in file order (ISO/IEC 14496-12 §4.2 box header)."""
    types = []
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
                f.seek(size - 16, 1)
            elif size == 0:
                types.append(kind.decode())
                break
            else:
                f.seek(size - 8, 1)
            types.append(kind.decode())
    return types


def moving_square(i: int, width: int, height: int) -> np.ndarray:
    """A frame with a gradient background and a white square that moves with ``i``."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    frame[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    x = (i * 7) % max(1, width - 40)
    frame[20:60, x:x + 40] = 255
    return frame


def decode(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "profile": s.codec_context.profile,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "duration_s": float(s.duration * s.time_base),
        }
        frames = [(f.pts * f.time_base, f.to_ndarray(format="bgr24")) for f in c.decode(s)]
    return info, frames


def test_clip_is_h264_yuv420p_faststart_with_expected_frames_and_duration(tmp_path):
    path = tmp_path / "clip.mp4"
    with ClipWriter(path, 320, 240, fps=10.0) as w:
        for i in range(25):
            w.write(moving_square(i, 320, 240), i / 10)
    info = w.info

    assert path.exists() and not path.with_suffix(".part").exists()
    assert info.frames == 25
    assert info.duration_s == pytest.approx(2.5)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (320, 240)
    data = path.read_bytes()
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()

    meta, frames = decode(path)
    assert meta["codec"] == "h264"
    assert meta["pix_fmt"] == "yuv420p"
    assert meta["profile"] in ("Main", "High")
    assert (meta["width"], meta["height"]) == (320, 240)
    assert len(frames) == 25
    assert meta["duration_s"] == pytest.approx(2.5, abs=0.01)
    assert [t for t, _ in frames] == [Fraction(i, 10) for i in range(25)]

    boxes = top_level_boxes(path)
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes


def test_timestamps_follow_capture_clock_without_duplicates(tmp_path):
    path = tmp_path / "vfr.mp4"
    ts = [5.0, 5.1, 5.35, 5.35, 5.4, 6.0]  # starts late, a gap, a repeated timestamp
    with ClipWriter(path, 64, 48, fps=10.0) as w:
        for i, t in enumerate(ts):
            w.write(moving_square(i, 64, 48), t)
    _, frames = decode(path)
    pts = [float(t) for t, _ in frames]
    assert len(pts) == len(ts)
    assert len(set(pts)) == len(pts)
    assert pts[0] == 0.0  # relative to the first frame
    assert pts == pytest.approx([0.0, 0.1, 0.35, 0.35, 0.4, 1.0], abs=1e-4)
    assert w.info.duration_s == pytest.approx(1.1)


@pytest.mark.parametrize("size", [(321, 241), (320, 241), (321, 240)])
def test_odd_sizes_are_padded_to_even(tmp_path, size):
    width, height = size
    path = tmp_path / "odd.mp4"
    with ClipWriter(path, width, height, fps=15.0) as w:
        for i in range(5):
            w.write(moving_square(i, width, height), i / 15)
    assert (w.info.width, w.info.height) == (width + width % 2, height + height % 2)
    meta, frames = decode(path)
    assert (meta["width"], meta["height"]) == (w.info.width, w.info.height)
    assert len(frames) == 5


def test_real_video_round_trip_keeps_the_picture(tmp_path, vtest_video):
    cap = cv2.VideoCapture(str(vtest_video))
    originals = []
    while len(originals) < 20:
        ok, frame = cap.read()
        assert ok
        originals.append(frame)
    cap.release()
    h, w = originals[0].shape[:2]
    path = tmp_path / "real.mp4"
    with ClipWriter(path, w, h, fps=10.0) as writer:
        for i, frame in enumerate(originals):
            writer.write(frame, i / 10)
    _, frames = decode(path)
    assert len(frames) == 20
    for (_, decoded), original in zip(frames, originals):
        assert cv2.PSNR(decoded, original) > 30.0


def test_bad_input_is_refused(tmp_path):
    w = ClipWriter(tmp_path / "bad.mp4", 64, 48, fps=10.0)
    with pytest.raises(ValueError, match="shape"):
        w.write(np.zeros((48, 65, 3), np.uint8), 0.0)
    with pytest.raises(ValueError, match="uint8"):
        w.write(np.zeros((48, 64, 3), np.float32), 0.0)
    w.write(moving_square(0, 64, 48), 1.0)
    with pytest.raises(ValueError, match="backwards"):
        w.write(moving_square(1, 64, 48), 0.5)
    w.close()
    with pytest.raises(ClipError):
        w.write(moving_square(2, 64, 48), 2.0)
    with pytest.raises(ValueError):
        ClipWriter(tmp_path / "x.mp4", 64, 48, fps=0)


def test_empty_or_aborted_clip_leaves_no_file(tmp_path):
    empty = ClipWriter(tmp_path / "empty.mp4", 64, 48, fps=10.0)
    with pytest.raises(ClipError, match="no frames"):
        empty.close()
    with pytest.raises(RuntimeError, match="boom"):
        with ClipWriter(tmp_path / "aborted.mp4", 64, 48, fps=10.0) as w:
            w.write(moving_square(0, 64, 48), 0.0)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_snapshot_is_a_jpeg_with_boxes_drawn(tmp_path):
    frame = np.full((240, 320, 3), 40, np.uint8)
    plain = encode_snapshot(frame, quality=90)
    boxed = encode_snapshot(frame, quality=90, boxes=[("person", 0.87, (80, 60, 240, 216))])  # pixels
    assert plain[:2] == b"\xff\xd8" and boxed[:2] == b"\xff\xd8"
    a = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(boxed, np.uint8), cv2.IMREAD_COLOR)
    assert a.shape == b.shape == (240, 320, 3)
    assert (frame == 40).all(), "the caller's frame must not be drawn on"
    # The box's left edge (x = 80) is drawn red; the same spot of the plain frame is grey.
    assert b[150, 80, 2] > 150 and b[150, 80, 0] < 100
    assert abs(int(a[150, 80, 2]) - 40) < 10
    # Outside the box nothing changed (up to JPEG noise).
    assert np.abs(a[225:, 280:].astype(int) - b[225:, 280:].astype(int)).max() < 10
    # The same box given as fractions of the frame draws the same picture.
    same = encode_snapshot(frame, quality=90, normalized=True,
                           boxes=[("person", 0.87, (80 / 319, 60 / 239, 240 / 319, 216 / 239))])
    c = cv2.imdecode(np.frombuffer(same, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(b.astype(int) - c.astype(int)).max() < 10
    with pytest.raises(ValueError, match="normalized"):
        encode_snapshot(frame, boxes=[("person", 0.5, (10, 10, 100, 100))], normalized=True)
    with pytest.raises(ValueError, match="quality"):
        encode_snapshot(frame, quality=0)
