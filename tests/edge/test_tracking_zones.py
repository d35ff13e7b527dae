"""Tracking, zones, filters and event cutting: unit rules on synthetic boxes, then real video through the
real model."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigint_edge.capture.source import Frame
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detection.detector import Detection, SyncDetector, load_detector
from vigint_edge.events.pipeline import CameraPipeline
from vigint_edge.delivery.spool import Spool
from vigint_edge.detection.tracker import Tracker
from vigint_edge.detection.zones import ZoneSpec, ZoneTracker


# ------------------------------------------------------------------------------------------- tracker
def _person(x, y, score=0.9, w=40, h=100):
    return Detection("person", score, (x, y, x + w, y + h))


def test_a_walking_person_keeps_one_track_id():
    tr = Tracker()
    ids = set()
    for i in range(30):  # 5 fps, walking 12 px per frame
        seen = tr.update([_person(100 + 12 * i, 200)], i / 5)
        ids.update(t.id for t in seen)
    assert len(ids) == 1
    assert tr.tracks[ids.pop()].confirmed


def test_two_people_crossing_paths_keep_their_ids():
    tr = Tracker()
    first = {}
    for i in range(20):
        seen = tr.update([_person(100 + 10 * i, 200), _person(400 - 10 * i, 300)], i / 5)
        for t in seen:
            first.setdefault(t.id, t.box)
    assert len(first) == 2


def test_low_scores_never_confirm_and_the_threshold_is_per_label():
    tr = Tracker(thresholds={"person": 0.7})
    for i in range(10):
        seen = tr.update([_person(100, 200, score=0.62)], i / 5)
    assert not seen[0].confirmed
    tr = Tracker(thresholds={"person": 0.6})
    for i in range(3):
        seen = tr.update([_person(100, 200, score=0.62)], i / 5)
    assert seen[0].confirmed


def test_an_object_that_stops_moving_becomes_stationary_and_moves_again():
    tr = Tracker(stationary_after_s=4)
    for i in range(30):  # 6 s still
        seen = tr.update([_person(100, 200)], i / 5)
    assert seen[0].stationary
    seen = tr.update([_person(120, 200)], 30 / 5)  # a step of half its width: moving again, same track
    assert not seen[0].stationary and len(tr.tracks) == 1


def test_a_track_unseen_for_max_age_is_closed():
    tr = Tracker(max_age_s=1)
    tr.update([_person(100, 200)], 0)
    tr.update([], 2)
    assert tr.tracks == {}


# --------------------------------------------------------------------------------------------- zones
def test_zone_enter_needs_inertia_and_loitering_then_exit_needs_inertia():
    zone = ZoneSpec(name="door", points=[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]], inertia=3, loitering_s=2)
    zt = ZoneTracker([zone], 1000, 1000)
    changes = [zt.update(1, "person", (800, 500), i / 5) for i in range(15)]
    entered_at = next(i for i, c in enumerate(changes) if c)
    assert changes[entered_at][0].kind == "enter" and entered_at == 10, "2 s of loitering at 5 fps"
    out = [zt.update(1, "person", (100, 500), 3 + i / 5) for i in range(3)]
    assert [c.kind for cs in out for c in cs] == ["exit"] and out[2], "exit after 3 frames outside"


def test_zone_ignores_labels_it_does_not_care_about():
    zt = ZoneTracker([ZoneSpec(name="road", points=[[0, 0], [1, 0], [1, 1]], inertia=1, labels=["car"])], 100, 100)
    assert zt.update(1, "person", (90, 10), 0) == []
    assert zt.update(2, "car", (90, 10), 0)[0].kind == "enter"


# ---------------------------------------------------------------------------------- real video events
@pytest.fixture(scope="module")
def detector(default_model_dir):
    return load_detector(default_model_dir / "model.xml", "CPU", score_threshold=0.4)


@pytest.fixture(scope="module")
def vtest_frames(vtest_video):
    cap = cv2.VideoCapture(str(vtest_video))
    frames = []
    while len(frames) < 200:  # 20 s
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def _run(frames, detector, tmp_path, fps=10.0, **camera_kw):
    camera = CameraConfig(id="lobby", source="unused.avi", **camera_kw)
    device = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(camera, device, EventConfig(pre_roll_s=1, post_roll_s=2, max_length_s=60),
                          MotionConfig(), detector, Spool(tmp_path / "spool", 10**9), tmp_path / "rec")
    pipe.fps = fps
    t0 = datetime.now(timezone.utc)
    for i, img in enumerate(frames):
        pipe.process(Frame(image=img, t=i / fps, wall=t0 + timedelta(seconds=i / fps), index=i))
    pipe.finish()
    return pipe


@pytest.mark.slow
def test_people_on_the_path_make_an_alert_with_their_zone(vtest_frames, detector, tmp_path):
    path = [[0.25, 0.35], [0.75, 0.35], [0.75, 0.9], [0.25, 0.9]]  # the walkway across the middle
    sky = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.1], [0.0, 0.1]]  # building top-left: nobody walks there
    pipe = _run(vtest_frames, detector, tmp_path, zones=[{"name": "path", "points": path},
                                                        {"name": "roof", "points": sky}],
                alert_zones=["path"])
    assert len(pipe.finished) == 1
    ev = pipe.finished[0]
    assert ev.severity == "alert" and ev.labels[0] == "person" and ev.zones == ["path"]
    assert {z.zone for z in ev.zone_events} == {"path"} and ev.zone_events[0].kind == "enter"
    assert [z.time for z in ev.zone_events] == sorted(z.time for z in ev.zone_events)
    assert ev.max_count["person"] >= 3
    assert pipe.tracker._next_id - 1 < 60, "tracks are stable, not a new id per detection"
    assert ev.clip.frames >= 190


@pytest.mark.slow
def test_alert_zone_nobody_enters_makes_a_plain_detection(vtest_frames, detector, tmp_path):
    roof = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.1], [0.0, 0.1]]
    pipe = _run(vtest_frames[:80], detector, tmp_path, zones=[{"name": "roof", "points": roof}], alert_zones=["roof"])
    assert [e.severity for e in pipe.finished] == ["detection"]


@pytest.mark.slow
def test_masks_and_area_filters_suppress_events(vtest_frames, detector, tmp_path):
    whole = [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert _run(vtest_frames[:60], detector, tmp_path / "a", masks=[whole]).finished == []
    big_only = {"person": {"min_area": 0.5}, "car": {"min_area": 0.5}}
    assert _run(vtest_frames[:60], detector, tmp_path / "b", filters=big_only).finished == []
    assert _run(vtest_frames[:60], detector, tmp_path / "c", enabled=False).finished == []
    assert len(_run(vtest_frames[:60], detector, tmp_path / "d").finished) == 1, "the same frames do alert"


@pytest.mark.slow
def test_a_person_standing_still_is_not_re_alerted(vtest_frames, detector, tmp_path):
    still = [vtest_frames[100]] * 300  # 30 s of the same picture: people present, nobody moving
    pipe = _run(still, detector, tmp_path)
    assert len(pipe.finished) == 1, "one event when they appear, none while they stand"
    ev = pipe.finished[0]
    duration = (ev.end_time - ev.start_time).total_seconds()
    assert duration < 15, "the event ends once everyone is stationary (10 s) plus post-roll"


def test_a_static_scene_never_reaches_the_detector(tmp_path):
    class Counting(SyncDetector):
        calls = 0
        input_size = (300, 300)

        def detect(self, frame):
            Counting.calls += 1
            return []

    grey = np.full((240, 320, 3), 90, np.uint8)
    pipe = _run([grey] * 100, Counting(), tmp_path)
    assert Counting.calls == 2, "the first frame (no background yet), then one look every 5 s"
    assert pipe.stats.motion_skipped >= 45


def test_a_static_scene_stays_quiet_with_the_real_async_detector(tmp_path, default_model_dir):
    """The same through OpenVINO's AsyncInferQueue: a result still in flight must not make the motion gate
    look again (it once did, and a static camera cost a detection on every detect frame)."""
    from vigint_edge.detection.detector import OpenVINOSSDDetector

    class Counting(OpenVINOSSDDetector):
        calls = 0

        def detect_async(self, frame, callback):
            Counting.calls += 1
            super().detect_async(frame, callback)

    grey = np.full((240, 320, 3), 90, np.uint8)
    pipe = _run([grey] * 100, Counting(default_model_dir / "model.xml"), tmp_path)
    assert Counting.calls == 2, Counting.calls
    assert pipe.stats.detect_frames == 2 and pipe.stats.motion_skipped >= 45


def test_an_event_split_at_max_length_right_before_the_source_ends_is_not_lost_or_broken(tmp_path):
    class Walker(SyncDetector):  # a person crossing the picture, 4 px per frame
        input_size = (300, 300)

        def __init__(self):
            self.calls = 0

        def detect(self, frame):
            self.calls += 1
            x = 20 + 8 * self.calls
            return [Detection("person", 0.9, (x, 40, x + 30, 120))]

    rng = np.random.default_rng(0)
    # The event starts at the 2nd detector frame (t = 0.2 s) and is split at t = 5.2 s, the last frame.
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(53)]
    camera = CameraConfig(id="lobby", source="unused.avi")
    device = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(camera, device, EventConfig(pre_roll_s=0, post_roll_s=2, max_length_s=5),
                          MotionConfig(), Walker(), Spool(tmp_path / "spool", 10**9), tmp_path / "rec")
    t0 = datetime.now(timezone.utc)
    for i, img in enumerate(frames):
        pipe.process(Frame(image=img, t=i / 10, wall=t0 + timedelta(seconds=i / 10), index=i))
    pipe.finish()  # the split-off event saw no detector frame yet: dropped cleanly, nothing half-written
    assert len(pipe.finished) == 1 and pipe.finished[0].clip.frames >= 45
    assert list((tmp_path / "rec").glob("*.part")) == []


# ------------------------------------------------------------------------- zone entries and exits on the event
class _Scripted(SyncDetector):
    """Returns ``script(call)`` (a list of detections, frame pixels) on its ``call``-th detector frame (1, 2, ...).
    No ``input_size``: the pipeline hands it the whole frame unscaled, so the boxes are frame pixels."""

    def __init__(self, script):
        self.script, self.calls = script, 0

    def detect(self, frame):
        self.calls += 1
        return self.script(self.calls)


def _run_synthetic(tmp_path, script, n_frames, zones, **event_kw):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(n_frames)]  # motion everywhere
    camera = CameraConfig(id="lobby", source="unused.avi", zones=zones)
    device = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
    cfg = EventConfig(**{"pre_roll_s": 1, "post_roll_s": 1, "max_length_s": 60, **event_kw})
    pipe = CameraPipeline(camera, device, cfg, MotionConfig(), _Scripted(script), Spool(tmp_path / "spool", 10**9),
                          tmp_path / "rec")
    t0 = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
    walls = [t0 + timedelta(seconds=i / 10) for i in range(n_frames)]
    for i, img in enumerate(frames):
        pipe.process(Frame(image=img, t=i / 10, wall=walls[i], index=i))
    pipe.finish()
    return pipe, walls


def test_a_person_entering_and_leaving_zones_travels_on_the_event_in_order(tmp_path):
    """A person walks left to right (8 px per detector frame, bottom edge at y 120 of 240) from inside zone
    ``start`` (entered at the very first detector frame: before the track is confirmed and the event starts,
    so it comes from the pre-roll) through zone ``door`` and out of it. A one-frame flicker in zone ``corner``
    never becomes a counted track: its entry is not on the event."""

    def script(call):
        x = 20 + 8 * call
        dets = [Detection("person", 0.9, (x, 40, x + 30, 120))] if call <= 30 else []
        if call == 6:
            dets.append(Detection("car", 0.9, (280, 200, 310, 235)))
        return dets

    full_height = lambda x1, x2: [[x1, 0.0], [x2, 0.0], [x2, 1.0], [x1, 1.0]]  # noqa: E731
    zones = [{"name": "start", "points": full_height(0.0, 0.2), "inertia": 1},
             {"name": "door", "points": full_height(0.4, 0.6), "inertia": 2},
             {"name": "corner", "points": [[0.8, 0.8], [1.0, 0.8], [1.0, 1.0], [0.8, 1.0]], "inertia": 1}]
    pipe, walls = _run_synthetic(tmp_path, script, 90, zones)
    assert len(pipe.finished) == 1
    end = pipe.finished[0]
    got = [(z.zone, z.kind) for z in end.zone_events]
    assert got == [("start", "enter"), ("start", "exit"), ("door", "enter"), ("door", "exit")], got
    assert len({z.track_id for z in end.zone_events}) == 1 and end.zone_events[0].label == "person"
    times = [z.time for z in end.zone_events]
    assert times == sorted(times) and all(t in walls for t in times), "frame capture times, in order"
    # bottom-centre x = 35 + 8 * call: the detector runs on every 2nd frame (5 of 10 fps), call k on frame 2(k-1)
    assert times[0] == walls[0], "start entered on the first detector frame (pre-roll, before confirmation)"
    first_outside_start = next(k for k in range(1, 40) if 35 + 8 * k > 64)
    assert times[1] == walls[2 * (first_outside_start - 1)]
    second_inside_door = next(k for k in range(1, 40) if 35 + 8 * k >= 128) + 1
    assert times[2] == walls[2 * (second_inside_door - 1)], "door entered after its inertia of 2 frames"
    assert end.start_time <= times[0] and times[-1] <= end.end_time
    # Every message is the whole event so far: each one's list is a prefix of the end's, the start has the
    # pre-roll's entry already, and the JSON on the wire carries them (RFC 3339 UTC).
    for msg in pipe.messages:
        assert msg.zone_events == end.zone_events[:len(msg.zone_events)]
    assert pipe.messages[0].phase == "start" and pipe.messages[0].zone_events[:1] == end.zone_events[:1]
    from vigint_edge.event_model import load_message
    wire = end.to_message_bytes()
    assert b'"zone_events":[{"zone":"start","track_id":' in wire and b'"kind":"enter","time":"2026-11-22T06:00:00' in wire
    assert load_message(wire).zone_events == end.zone_events
    from vigint.schema import LifecycleMessage as CloudLifecycleMessage  # what ingest validates
    sent = end.model_copy(update={"sent_at": end.end_time}).to_message_bytes()  # delivery sets sent_at
    cloud = CloudLifecycleMessage.parse(sent).zone_events
    assert [(z.zone, z.track_id, z.label, z.kind, z.time) for z in cloud] == \
        [(z.zone, z.track_id, z.label, z.kind, z.time) for z in end.zone_events]


def test_an_event_keeps_only_its_first_100_zone_changes(tmp_path):
    """A person shuffling on a zone's edge (inertia 1) enters or leaves it on every detector frame: 130 changes,
    the event carries the first 100 (``MAX_ZONE_EVENTS``), which the message model also enforces."""
    from vigint_edge.event_model import MAX_ZONE_EVENTS

    def script(call):
        x = 146 + (4 if call % 2 else 0)  # bottom-centre x 165 / 161 of a zone from x 163.2 (0.51 of 320)
        return [Detection("person", 0.9, (x, 40, x + 30, 120))] if call <= 131 else []

    zones = [{"name": "edge", "points": [[0.51, 0.0], [1.0, 0.0], [1.0, 1.0], [0.51, 1.0]], "inertia": 1}]
    pipe, walls = _run_synthetic(tmp_path, script, 270, zones, stationary_after_s=100)
    assert len(pipe.finished) == 1 and MAX_ZONE_EVENTS == 100
    ev = pipe.finished[0]
    assert len(ev.zone_events) == 100
    assert [z.kind for z in ev.zone_events] == ["enter", "exit"] * 50
    assert [z.time for z in ev.zone_events] == walls[0:200:2], "the first 100, one per detector frame"
    import json

    from vigint_edge.event_model import load_message
    data = json.loads(ev.to_message_bytes())
    assert load_message(json.dumps(data).encode()).zone_events == ev.zone_events
    data["zone_events"] = data["zone_events"] + data["zone_events"][-1:]
    with pytest.raises(ValueError, match="zone_events"):
        load_message(json.dumps(data).encode())
