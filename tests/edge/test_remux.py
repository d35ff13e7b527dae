"""H.264 cameras: event clips remuxed from the camera's own packets (no re-encoding), the continuous recording
and clips requested for a time range — real video (vtest.avi re-encoded once as H.264 with a 2-s GOP) through
the real capture, pipeline and model."""

from __future__ import annotations

import hashlib
import math
import os
import queue
import threading
from datetime import timedelta
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vigint_edge.bench import make_h264
from vigint_edge.capture.source import Frame, VideoSource, _put_dropping_oldest, reformat
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detection.detector import load_detector
from vigint_edge.events.pipeline import CameraPipeline, ClipUnavailable
from vigint_edge.recording.recorder import Recorder
from vigint_edge.delivery.spool import Spool

GOP = 20  # frames between keyframes (2 s at 10 fps)


@pytest.fixture(scope="module")
def h264_video(vtest_video, tmp_path_factory) -> Path:
    """vtest.avi (795 frames, 10 fps) as H.264 mp4 the way IP cameras send it: a keyframe every 2 s (GOP 20
    frames), no B-frames."""
    return make_h264(vtest_video, tmp_path_factory.mktemp("h264") / "vtest.mp4")


@pytest.fixture(scope="module")
def detector(default_model_dir):
    return load_detector(default_model_dir / "model.xml", "CPU", score_threshold=0.4)


def packet_hashes(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(video=0) if p.size]


def run_pipeline(video: Path, detector, work: Path, seconds: float | None = None, **event_cfg):
    cam = CameraConfig(id="door", source=str(video), realtime=False)
    dev = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(cam, dev, EventConfig(**event_cfg), MotionConfig(), detector,
                          Spool(work / "spool", 2 * 1024**3), work / "rec")
    source = VideoSource(cam, max_frames=int(seconds * 10) if seconds else None)
    frames = []
    for f in source.frames():
        pipe.process(f)
        frames.append((f.t, f.wall, f.key))
    pipe.finish()
    return pipe, frames


def test_h264_event_clip_is_the_cameras_own_packets_from_a_keyframe(h264_video, detector, tmp_path):
    pipe, frames = run_pipeline(h264_video, detector, tmp_path, seconds=30, pre_roll_s=3.0)
    assert pipe.finished, "no event on 30 s of people walking"
    source = set(packet_hashes(h264_video))
    for event in pipe.finished:
        clip = next(tmp_path.glob(f"spool/**/{event.item_id}/clip.mp4"))
        hashes = packet_hashes(clip)
        assert hashes and set(hashes) <= source, "clip packets are not the camera's own: re-encoded"
        with av.open(str(clip)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264"
            first = next(c.demux(video=0))
            assert first.is_keyframe, "a remuxed clip must start at a keyframe"
        with av.open(str(clip)) as c:
            decoded = sum(1 for _ in c.decode(video=0))
        assert decoded == event.clip.frames == len(hashes)
        assert abs(event.clip.duration_s - decoded / 10) < 0.15
        head = clip.read_bytes()
        assert head.find(b"moov") < head.find(b"mdat"), "not faststart"
    # Pre-roll reaches back to the keyframe at or before (first detection - 3 s), or the start of the video.
    first_event = pipe.finished[0]
    origin = frames[0][1]
    since = (min(d.time for d in first_event.detections) - origin).total_seconds()
    keyframe = math.floor(max(0.0, since - 3.0) / (GOP / 10)) * (GOP / 10)
    assert (first_event.start_time - origin).total_seconds() == pytest.approx(keyframe, abs=0.15)


def test_ring_keeps_no_pixels_for_remuxed_clips(h264_video, detector, tmp_path):
    pipe, _ = run_pipeline(h264_video, detector, tmp_path, seconds=8)
    assert pipe._ring and all(f._image is None and f.av_frame is None for f in pipe._ring)
    assert any(f.key for f in pipe._ring), "the pre-roll must start at a keyframe"


def test_continuous_recording_and_a_requested_clip(h264_video, detector, tmp_path):
    pipe, frames = run_pipeline(h264_video, detector, tmp_path)
    segments = pipe.recorder.segments()
    total = frames[-1][0] + 0.1
    assert len(segments) == pytest.approx(total / 10, abs=1.5)
    assert all(s.end > s.start for s in segments)
    for a, b in zip(segments, segments[1:]):
        assert abs((b.start - a.end).total_seconds()) < 0.25, "segments must follow each other without gaps"
    for s in segments:
        with av.open(str(s.path)) as c:
            assert next(c.demux(video=0)).is_keyframe

    origin = frames[0][1]
    start, end = origin + timedelta(seconds=23.3), origin + timedelta(seconds=41.0)
    event = pipe.request_clip(start, end)
    assert event.kind == "recording" and event.severity == "detection" and event.labels == []
    assert start - timedelta(seconds=GOP / 10 + 0.2) <= event.start_time <= start
    assert event.end_time >= end - timedelta(seconds=0.25)
    item = next(tmp_path.glob(f"spool/**/{event.event_id}/clip.mp4"))
    hashes = packet_hashes(item)
    assert set(hashes) <= set(packet_hashes(h264_video)), "requested clip was re-encoded"
    assert len(hashes) == event.clip.frames
    assert event.clip.frames == pytest.approx((event.end_time - event.start_time).total_seconds() * 10, abs=2)
    assert next(tmp_path.glob(f"spool/**/{event.event_id}/snapshot.jpg")).read_bytes()[:2] == b"\xff\xd8"

    with pytest.raises(ClipUnavailable, match="nothing recorded"):
        pipe.request_clip(origin - timedelta(hours=2), origin - timedelta(hours=1, minutes=55))
    with pytest.raises(ClipUnavailable, match="after start"):
        pipe.request_clip(end, start)


def test_request_clip_on_a_camera_that_is_not_h264(vtest_video, detector, tmp_path):
    pipe, frames = run_pipeline(vtest_video, detector, tmp_path, seconds=5)
    with pytest.raises(ClipUnavailable, match="not H.264"):
        pipe.request_clip(frames[0][1], frames[-1][1])


def test_recording_evicts_oldest_segments_by_size_and_age(h264_video, tmp_path):
    cam = CameraConfig(id="door", source=str(h264_video), realtime=False)
    rec = Recorder(tmp_path / "rec", keep_minutes=10, max_bytes=2_500_000, segment_s=4)
    for f in VideoSource(cam).frames():
        rec.add(f)
    rec.close()
    segs = rec.segments()
    assert rec.evicted > 0 and sum(s.bytes for s in segs) <= 2_500_000
    assert segs[-1].end - segs[0].start < timedelta(seconds=40)
    (tmp_path / "rec" / "123.part").write_bytes(b"half a segment")  # a kill -9 mid-segment ...
    (tmp_path / "cut-rec-abc").mkdir()  # ... or mid-cut (hard links of the segments being cut)
    os.link(segs[0].path, tmp_path / "cut-rec-abc" / segs[0].path.name)
    rec2 = Recorder(tmp_path / "rec", keep_minutes=0.5, max_bytes=10**9, segment_s=4)
    assert not list((tmp_path / "rec").glob("*.part")), "a half-written segment survived a restart"
    assert not (tmp_path / "cut-rec-abc").exists(), "an interrupted cut's links survived a restart"
    assert [s.path for s in rec2.segments()] == [s.path for s in segs], "finished segments survive a restart"
    # By age: keep 0.5 min of what is recorded next.
    for f in VideoSource(cam, max_frames=200).frames():
        rec2.add(f)
    rec2.close()
    segs2 = rec2.segments()
    assert segs2[-1].end - segs2[0].start <= timedelta(seconds=30 + 4 + 0.5)


def test_frames_dropped_for_a_slow_consumer_keep_their_packets():
    """A stream reader drops the oldest queued frame when detection falls behind; its packets must go out with
    the next frame, or the remuxed clip would have holes."""
    q: queue.Queue = queue.Queue(maxsize=2)
    drops = []
    for i in range(5):
        _put_dropping_oldest(q, (f"img{i}", [f"p{i}"], None, None), lambda: drops.append(1))
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert len(drops) == 3
    assert [p for it in items for p in it[1]] == ["p0", "p1", "p2", "p3", "p4"]


def test_frame_converts_pixels_only_when_asked(h264_video):
    cam = CameraConfig(id="door", source=str(h264_video), realtime=False)
    frame = next(iter(VideoSource(cam, max_frames=1).frames()))
    assert isinstance(frame, Frame) and frame._image is None
    assert frame.image.shape == (576, 768, 3) and frame._image is not None


def test_split_event_starts_at_the_last_keyframe_without_a_gap(h264_video, detector, tmp_path):
    pipe, frames = run_pipeline(h264_video, detector, tmp_path, seconds=40, max_length_s=12.0)
    assert len(pipe.finished) >= 2, [e.event_id for e in pipe.finished]
    origin = frames[0][1]
    for a, b in zip(pipe.finished, pipe.finished[1:]):
        if (b.start_time - a.end_time).total_seconds() > 1.0:
            continue  # a new event after a quiet spell, not a split
        offset = (b.start_time - origin).total_seconds()
        assert offset / (GOP / 10) == pytest.approx(round(offset / (GOP / 10)), abs=0.08), "not at a keyframe"
        overlap = (a.end_time - b.start_time).total_seconds()
        assert -0.15 <= overlap <= GOP / 10, f"split clips overlap {overlap:.2f} s (gap if negative)"
        break
    else:
        pytest.fail("no split found")


@pytest.mark.parametrize("region", [(101, 33, 451, 383), (0, 0, 300, 300), (468, 276, 768, 576), (3, 5, 304, 306)])
def test_detector_crops_from_the_decoders_picture_match_the_full_conversion(h264_video, region):
    """``Frame.bgr(region)`` converts only the region from the 4:2:0 planes; it must give the same pixels (up to
    rounding) as converting the whole frame and cropping, odd edges included."""
    cam = CameraConfig(id="door", source=str(h264_video), realtime=False)
    frame = list(VideoSource(cam, max_frames=30).frames())[-1]
    crop = frame.bgr(region)
    full = Frame(av_frame=frame.av_frame).image
    expected = full[region[1]:region[3], region[0]:region[2]]
    assert frame._image is None, "the crop must not convert the whole frame"
    assert crop.shape == expected.shape
    assert np.abs(crop.astype(int) - expected).mean() < 2.0
    assert frame.bgr(region, (300, 300)).shape == (300, 300, 3)
    luma = frame.gray()
    assert luma.shape == (576, 768) and np.corrcoef(luma.ravel(), cv2.cvtColor(full, cv2.COLOR_BGR2GRAY).ravel())[0, 1] > 0.99


def test_shared_reformatter_follows_each_frames_size_and_the_requested_output(h264_video, tmp_path):
    """``capture.reformat`` keeps one swscale context per thread; alternating sources, sizes and formats must
    still give what each frame's own ``reformat`` gives (a stale context would scale to the previous size)."""
    small = tmp_path / "small.mp4"
    make_h264(h264_video, small, size=(320, 240), seconds=1)
    frames = [next(iter(VideoSource(CameraConfig(id=f"cam{i}", source=str(p), realtime=False), max_frames=1).frames()))
              for i, p in enumerate((h264_video, small))]
    for _ in range(2):
        for frame in frames:
            for kw in ({"format": "bgr24"}, {"width": 300, "height": 300, "format": "bgr24"},
                       {"width": 160, "height": 120, "format": "yuv420p"}):
                ours = reformat(frame.av_frame, **kw).to_ndarray()
                theirs = frame.av_frame.reformat(**kw).to_ndarray()
                assert ours.shape == theirs.shape and np.array_equal(ours, theirs), kw


def test_a_file_readers_unexpected_failure_reaches_the_consumer(h264_video, monkeypatch):
    """Files are decoded on a reader thread; an error there that is not FFmpeg's (which ends the file with a
    warning) must be raised to the consumer, not leave it waiting for frames forever."""
    from vigint_edge.capture import source as capture

    real = capture._decode

    def failing(container, stream):
        for i, item in enumerate(real(container, stream)):
            if i == 3:
                raise RuntimeError("reader broke")
            yield item

    monkeypatch.setattr(capture, "_decode", failing)
    got, errors = [], []

    def consume():
        try:
            for frame in VideoSource(CameraConfig(id="door", source=str(h264_video), realtime=False)).frames():
                got.append(frame.index)
        except RuntimeError as exc:
            errors.append(str(exc))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(60)
    assert not consumer.is_alive(), "the consumer is still waiting for frames"
    assert errors == ["reader broke"] and got == [0, 1, 2]
