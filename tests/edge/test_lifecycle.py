"""The event lifecycle on real video through the real model: live HLS segments (encoded from vtest.avi, an
MPEG-4 part 2 file; remuxed from a camera-like H.264 file) and the start / update / end messages in the spool.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import av
import pytest

from vigint_edge.bench import make_h264
from vigint_edge.capture.source import VideoSource
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detection.detector import load_detector
from vigint_edge.event_model import LifecycleMessage, segment_name
from vigint_edge.events.pipeline import CameraPipeline
from vigint_edge.delivery.spool import Spool

pytestmark = pytest.mark.slow
CAMERA_GOP_S = 2.0  # make_h264: a keyframe every 2 s, no B-frames


@pytest.fixture(scope="module")
def detector(default_model_dir):
    return load_detector(default_model_dir / "model.xml", "CPU", score_threshold=0.4)


class Run:
    """One pipeline run: every message spooled, in put order, with what was going on when it was put."""

    def __init__(self, video: Path, detector, work: Path, seconds: float, **events):
        self.spool = Spool(work / "spool", 2 * 1024**3)
        cam = CameraConfig(id="door", source=str(video), realtime=False)
        dev = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
        self.cfg = EventConfig(**events)
        self.pipe = CameraPipeline(cam, dev, self.cfg, MotionConfig(), detector, self.spool, work / "rec")
        self.puts: list[tuple[str, bool, int]] = []  # (item id, an event open at put time, frame index)
        self.frame_index = -1
        self.spool.add_listener(lambda item: self.puts.append(
            (item.item_id, self.pipe._active is not None or self.pipe._closing is not None, self.frame_index)))
        for f in VideoSource(cam, max_frames=int(seconds * 10)).frames():
            self.frame_index = f.index
            self.pipe.process(f)
        self.frame_index = 10**9  # finish(): the source has ended
        self.pipe.finish()
        self.items = {it.item_id: it for it in self.spool.pending()}
        self.messages = {i: self.spool.load_event(it) for i, it in self.items.items()}

    def events(self) -> dict[str, list[LifecycleMessage]]:
        by_event: dict[str, list[LifecycleMessage]] = {}
        for iid in sorted(self.messages):
            m = self.messages[iid]
            by_event.setdefault(m.event_id, []).append(m)
        return by_event

    def segment_files(self, event_id: str) -> list[tuple[dict, Path]]:
        out = []
        for m in self.events()[event_id]:
            for seg in m.segments:
                out.append((seg, self.items[m.item_id].path / segment_name(seg.index)))
        return out


@pytest.fixture(scope="module")
def encoded_run(vtest_video, detector, tmp_path_factory):
    """45 s of vtest.avi (MPEG-4 part 2: clips and segments encoded with libx264), split at 20 s."""
    return Run(vtest_video, detector, tmp_path_factory.mktemp("enc"), 45, max_length_s=20, segment_s=2.0)


@pytest.fixture(scope="module")
def remux_run(vtest_video, detector, tmp_path_factory):
    """30 s of vtest.avi as camera-like H.264 (2-s GOP): segments of 3 s asked, so they are two GOPs long."""
    work = tmp_path_factory.mktemp("remux")
    video = make_h264(vtest_video, work / "camera.mp4", seconds=30)
    run = Run(video, detector, work, 30, max_length_s=60, segment_s=3.0)
    run.video = video
    return run


def _check_segments(run: Run, segment_s: float, gop_s: float) -> None:
    events = run.events()
    assert events, "no event on people walking"
    for event_id, messages in events.items():
        end = messages[-1]
        segs = run.segment_files(event_id)
        assert [s.index for s, _ in segs] == list(range(len(segs))) == list(range(end.segment_count))
        assert segs, f"{event_id}: no segment"
        last_pts = None
        frames_total = 0
        for k, (seg, path) in enumerate(segs):
            data = path.read_bytes()
            assert seg.bytes == len(data) and seg.sha256 == hashlib.sha256(data).hexdigest()
            with av.open(str(path)) as c:
                frames = list(c.decode(video=0))
            assert frames, f"segment {k} decodes to no frame"
            assert frames[0].key_frame, f"segment {k} does not start with a keyframe"
            frames_total += len(frames)
            times = [f.time for f in frames]
            assert times == sorted(times)
            if last_pts is not None:  # continuous over the event: the next segment picks up one frame later
                assert 0 < times[0] - last_pts <= 0.25, (k, last_pts, times[0])
            last_pts = times[-1]
            if k + 1 < len(segs):
                assert segs[k + 1][0].start_s == pytest.approx(seg.start_s + seg.duration_s, abs=1e-3)
                assert segment_s - 1e-3 <= seg.duration_s <= segment_s + gop_s + 1e-3, (k, seg.duration_s)
            else:
                assert 0 < seg.duration_s <= segment_s + gop_s + 1e-3
        if end.clip is not None:
            total = sum(s.duration_s for s, _ in segs)
            assert total == pytest.approx(end.clip.duration_s, abs=0.15)
            assert frames_total == end.clip.frames


def test_encoded_segments_decode_start_at_keyframes_and_cover_the_clip(encoded_run):
    _check_segments(encoded_run, segment_s=2.0, gop_s=2.0)


def test_remuxed_segments_are_the_cameras_own_packets(remux_run):
    _check_segments(remux_run, segment_s=3.0, gop_s=CAMERA_GOP_S)
    for event_id in remux_run.events():
        segs = remux_run.segment_files(event_id)
        assert all(s.duration_s == pytest.approx(4.0, abs=0.01) for s, _ in segs[:-1]), \
            "3-s segments on a 2-s GOP are cut at the next keyframe: 4 s"
        seg_nals = [n for _, p in segs for n in _vcl_nals_annexb(p)]
        with av.open(str(remux_run.video)) as c:  # mp4: 4-byte length-prefixed NAL units
            camera_nals = [n for pkt in c.demux(video=0) if pkt.size for n in _vcl_nals_avcc(bytes(pkt))]
        start = camera_nals.index(seg_nals[0])
        assert camera_nals[start:start + len(seg_nals)] == seg_nals, "segment slices differ from the camera's"


def _vcl_nals_avcc(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        nal = data[i + 4:i + 4 + n]
        if nal and nal[0] & 0x1F in (1, 5):  # coded slices (non-IDR, IDR)
            out.append(nal)
        i += 4 + n
    return out


def _vcl_nals_annexb(path: Path) -> list[bytes]:
    import re

    out = []
    with av.open(str(path)) as c:
        for pkt in c.demux(video=0):
            if not pkt.size:
                continue
            parts = re.split(rb"\x00\x00\x00\x01|\x00\x00\x01", bytes(pkt))
            for nal in parts:
                nal = nal.rstrip(b"\x00") if nal and nal[0] & 0x1F not in (1, 5) else nal
                if nal and nal[0] & 0x1F in (1, 5):
                    out.append(nal)
    return out


@pytest.mark.parametrize("which", ["encoded_run", "remux_run"])
def test_lifecycle_messages_of_a_real_event(which, request):
    run: Run = request.getfixturevalue(which)
    events = run.events()
    put_order = [iid for iid, _, _ in run.puts]
    assert sorted(put_order) == sorted(run.messages) and len(set(put_order)) == len(put_order)
    for event_id, messages in events.items():
        assert [m.seq for m in messages] == list(range(len(messages))), "seq contiguous from 0"
        assert [m.phase for m in messages] == ["start"] + ["update"] * (len(messages) - 2) + ["end"]
        start, end = messages[0], messages[-1]
        # The start is spooled while the event is running, long before its end.
        start_put = next(p for p in run.puts if p[0] == start.item_id)
        end_put = next(p for p in run.puts if p[0] == end.item_id)
        assert start_put[1], "the start was spooled while the event was open"
        assert put_order.index(start.item_id) < put_order.index(end.item_id)
        assert start_put[2] < end_put[2], "start and end were spooled at different frames"
        assert start.first_seen <= start.confirmed_at <= start.end_time
        assert start.snapshot is not None and start.snapshot.object.endswith(f"/{event_id}/snapshots/00000.jpg")
        assert (run.items[start.item_id].path / "snapshots/00000.jpg").stat().st_size == start.snapshot.bytes
        assert start.clip is None and end.clip is not None and end.clip.object.endswith(f"/{event_id}/clip.mp4")
        # The start is its snapshot alone (the alert's path); the first segments come in the next message.
        assert start.segments == [] and sorted(run.items[start.item_id].path.glob("segments/*")) == []
        assert messages[1].segments and messages[1].segments[0].index == 0, "the first segments come next"
        indices = [s.index for m in messages for s in m.segments]
        assert indices == list(range(end.segment_count)), "every segment once, in order"
        for m in messages[1:-1]:
            assert m.segments or m.severity == "alert", "an update brings a segment or the alert"
        for a, b in zip(messages, messages[1:]):  # cumulative: nothing shrinks, severity never falls
            assert b.end_time >= a.end_time and set(a.labels) <= set(b.labels)
            assert (a.severity, b.severity) != ("alert", "detection")
            assert b.first_seen == a.first_seen and b.confirmed_at == a.confirmed_at
        alerts = [m for m in messages if m.severity == "alert"]
        if alerts:
            first_alert = alerts[0]
            assert first_alert.alert_first_seen <= first_alert.alert_confirmed_at <= first_alert.end_time
            if first_alert.phase == "update":  # became an alert later: an update with that frame's snapshot
                assert first_alert.snapshot.object.endswith(f"snapshots/{first_alert.seq:05d}.jpg")
        assert run.spool.open_events() == []
    assert run.pipe.stats.start_latency_ms and all(ms > 0 for ms in run.pipe.stats.start_latency_ms)


def test_the_start_carries_its_snapshot_alone_and_the_pre_roll_follows(vtest_video, detector, tmp_path):
    """A camera (H.264, remuxed) on an empty scene for 6 s, then people: with 5 s of pre-roll, 2 s segments of
    it are cut when the event is confirmed. They go in the update spooled right after the start, not in the
    start, whose upload before its publish is the alert's path."""
    video = make_h264(vtest_video, tmp_path / "lead.mp4", seconds=12, empty_lead_s=6)
    run = Run(video, detector, tmp_path, 12, pre_roll_s=5, segment_s=2.0, max_length_s=60)
    [messages] = run.events().values()
    start, first_update = messages[0], messages[1]
    assert start.phase == "start" and start.segments == [] and start.snapshot is not None
    assert start.start_time <= start.first_seen - timedelta(seconds=4), "the clip begins with the pre-roll"
    assert [s.index for s in first_update.segments][:2] == [0, 1], "the pre-roll segments, cut at once"
    put_frame = {iid: frame for iid, _, frame in run.puts}
    assert put_frame[first_update.item_id] == put_frame[start.item_id], "spooled at the start's frame"
    live = run.spool.pending("live")
    assert live[0].item_id == start.item_id, "the start is delivered first"


def test_a_split_event_says_which_one_it_continues(encoded_run):
    ends = [ms[-1] for ms in encoded_run.events().values()]
    assert len(ends) >= 2, "45 s of continuous activity with max_length_s 20 splits"
    assert ends[0].continues is None
    for a, b in zip(ends, ends[1:]):
        if b.continues is not None:
            assert b.continues == a.event_id
            assert all(m.continues == a.event_id for m in encoded_run.events()[b.event_id])
    assert any(b.continues == a.event_id for a, b in zip(ends, ends[1:]))
