"""Camera health monitor at unit level: real vtest.avi frames and synthetic black/changed views, a real
spool on disk, a fake clock (so hold times and offline delays take no wall time)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

from vigint_edge.config import CameraConfig, DeviceConfig
from vigint_edge.event_model import EdgeEvent
from vigint_edge.events.camera_health import (
    BLACK,
    OFFLINE,
    ONLINE,
    TAMPERED,
    HealthMonitor,
    black_level,
    tamper_score,
    thumbnail,
)
from vigint_edge.delivery.spool import Spool

DEVICE = DeviceConfig(tenant_id="demo", device_id="nuc-1", api_url="http://127.0.0.1:9")
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 1000.0)


@pytest.fixture(scope="module")
def vtest_frames(vtest_video):
    """Every 5th frame of the first 60 s of vtest.avi (0.5 s apart at its 10 fps)."""
    cap = cv2.VideoCapture(str(vtest_video))
    frames = []
    for i in range(600):
        ok, img = cap.read()
        assert ok, f"vtest.avi ended at frame {i}"
        if i % 5 == 0:
            frames.append(img)
    cap.release()
    return frames


def _monitor(tmp_path, **cam_kw):
    clock = FakeClock()
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    woken = []
    cam = CameraConfig(id="lobby", source="rtsp://admin:secret@cam.local/stream", **cam_kw)
    mon = HealthMonitor(cam, DEVICE, spool, on_event=woken.append, clock=clock, wall=clock.wall)
    return mon, spool, clock, woken


def _events(spool) -> list[EdgeEvent]:
    return [spool.load_event(it) for it in spool.pending()]


def _feed(mon, clock, frames, step_s=0.5):
    for img in frames:
        mon.observe(img, clock.wall())
        clock.t += step_s


def test_normal_scene_raises_nothing(tmp_path, vtest_frames):
    mon, spool, clock, _ = _monitor(tmp_path)
    _feed(mon, clock, vtest_frames)  # 60 s of people, a van and cars walking/driving through
    mon.check()
    assert _events(spool) == []
    assert mon.state()["state"] == "ok"
    assert mon.last_tamper_score is not None and mon.last_tamper_score < 0.3
    assert mon.last_black_level > 100


def test_black_frames_for_the_hold_time_raise_one_alert_with_a_snapshot(tmp_path, vtest_frames):
    mon, spool, clock, woken = _monitor(tmp_path, health_hold_s=3.0, black_frame_threshold=16)
    _feed(mon, clock, vtest_frames[:10])
    black = np.zeros_like(vtest_frames[0]) + np.uint8(4)
    black[100:110, 100:110] = 30  # a little sensor glow: still black (98th percentile stays low)
    _feed(mon, clock, [black] * 5)  # 2.5 s: shorter than the hold time
    assert _events(spool) == []
    _feed(mon, clock, [black] * 10)  # now 7.5 s black in all
    events = _events(spool)
    assert len(events) == 1, "one alert per episode, not one per frame"
    ev = events[0]
    assert (ev.kind, ev.severity, ev.labels, ev.camera_id) == ("camera_health", "alert", [BLACK], "lobby")
    assert ev.clip is None and ev.snapshot is not None
    assert ev.start_time == T0 + timedelta(seconds=5.0), "starts at the first black frame"
    assert ev.end_time >= ev.start_time + timedelta(seconds=3.0)
    item = spool.pending()[0]
    jpeg = item.snapshot_path.read_bytes()
    snap = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert snap.shape == black.shape[:2] and snap.mean() < 10, "the snapshot shows the black frame"
    assert woken == events
    assert mon.state()["state"] == "black"
    # Picture comes back: cleared, and a second black episode alerts again.
    _feed(mon, clock, vtest_frames[10:14])
    assert mon.state()["state"] == "ok"
    _feed(mon, clock, [black] * 8)
    assert [e.labels for e in _events(spool)] == [[BLACK], [BLACK]]


def test_a_dark_scene_with_some_light_is_not_black(tmp_path, vtest_frames):
    mon, spool, clock, _ = _monitor(tmp_path)
    night = [cv2.convertScaleAbs(f, alpha=0.15) for f in vtest_frames[:20]]  # very dim, structure kept
    _feed(mon, clock, night)
    assert _events(spool) == []
    assert black_level(thumbnail(night[0])) > 16


@pytest.mark.parametrize("change", ["rotated", "shifted", "covered"])
def test_abrupt_view_change_raises_tamper_once_then_adopts_the_new_view(tmp_path, vtest_frames, change):
    mon, spool, clock, _ = _monitor(tmp_path, health_hold_s=2.0)
    _feed(mon, clock, vtest_frames[:40])  # 20 s to learn the background
    assert _events(spool) == []

    def changed(img):
        if change == "rotated":
            return cv2.rotate(img, cv2.ROTATE_180)
        if change == "shifted":  # the camera was turned: the view slides by a third of its width
            return np.roll(img, img.shape[1] // 3, axis=1)
        out = img.copy()  # something held in front of most of the lens
        out[:, : img.shape[1] * 2 // 3] = (40, 50, 60)
        return out

    _feed(mon, clock, [changed(f) for f in vtest_frames[40:80]])  # 20 s of the new view
    events = _events(spool)
    assert [e.labels for e in events] == [[TAMPERED]], f"{change}: exactly one tamper alert"
    assert events[0].snapshot is not None and events[0].clip is None


def test_brightness_change_is_not_tamper(tmp_path, vtest_frames):
    mon, spool, clock, _ = _monitor(tmp_path, health_hold_s=1.0)
    _feed(mon, clock, vtest_frames[:20])
    _feed(mon, clock, [cv2.convertScaleAbs(f, alpha=0.5, beta=60) for f in vtest_frames[20:60]])
    assert _events(spool) == []


def test_tamper_score_bounds():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (48, 64)).astype(np.float32)
    assert tamper_score(a, a) == pytest.approx(0.0, abs=1e-6)
    assert tamper_score(a, 255 - a) == pytest.approx(2.0, abs=1e-6)
    assert tamper_score(np.full_like(a, 7), a) == 1.0
    with pytest.raises(ValueError):
        thumbnail(np.zeros((4, 4, 3), np.float32))


def test_camera_down_raises_offline_after_the_delay_with_the_last_frame(tmp_path, vtest_frames, caplog):
    mon, spool, clock, _ = _monitor(tmp_path, offline_alert_after_s=30.0)
    _feed(mon, clock, vtest_frames[:4])  # last frame at t = 1.5 s
    mon.source_state(False, "camera lobby: cannot open rtsp://***@cam.local/stream")
    clock.t += 20
    mon.check()
    assert _events(spool) == [], "not yet: 22 s without a frame"
    clock.t += 10
    with caplog.at_level(logging.WARNING, logger="vigint_edge.events.camera_health"):
        mon.check()
        mon.check()
    events = _events(spool)
    assert [e.labels for e in events] == [[OFFLINE]]
    assert events[0].start_time == T0 + timedelta(seconds=1.5), "down since the last frame"
    assert events[0].snapshot is not None and events[0].snapshot.time == T0 + timedelta(seconds=1.5)
    assert mon.state()["state"] == "offline" and mon.state()["connected"] is False
    assert "secret" not in caplog.text and "cannot open rtsp://***@cam.local/stream" in caplog.text
    # Frames again: cleared (and said so, see below); another outage alerts again.
    mon.source_state(True, "connected")
    _feed(mon, clock, vtest_frames[4:6])
    assert mon.state()["state"] == "ok"
    clock.t += 31
    mon.check()
    assert [e.labels for e in _events(spool)] == [[OFFLINE], [ONLINE], [OFFLINE]]


def test_camera_back_after_an_offline_alert_raises_online_with_the_time_it_was_down(tmp_path, vtest_frames,
                                                                                     caplog):
    mon, spool, clock, woken = _monitor(tmp_path, offline_alert_after_s=30.0)
    _feed(mon, clock, vtest_frames[:4])  # last frame at t = 1.5 s
    mon.source_state(False, "camera lobby: stream stalled")
    clock.t += 40
    mon.check()
    assert [e.labels for e in _events(spool)] == [[OFFLINE]]
    clock.t += 60  # still down: nothing more
    mon.check()
    assert len(_events(spool)) == 1
    mon.source_state(True, "connected")  # connected is not enough: frames must come
    assert len(_events(spool)) == 1
    back = T0 + timedelta(seconds=clock.t - 1000.0)
    with caplog.at_level(logging.INFO, logger="vigint_edge.events.camera_health"):
        _feed(mon, clock, vtest_frames[4:10])  # six frames: still one online event
    events = _events(spool)
    assert [e.labels for e in events] == [[OFFLINE], [ONLINE]]
    online = events[1]
    assert (online.kind, online.camera_id, online.clip) == ("camera_health", "lobby", None)
    assert (events[0].severity, online.severity) == ("alert", "detection"), "back online is news, not an alert"
    assert online.start_time == T0 + timedelta(seconds=1.5), "down since its last frame, as the offline event"
    assert online.end_time == back, "up again at the first new frame"
    assert (online.end_time - online.start_time).total_seconds() == pytest.approx(100.5)
    assert online.snapshot is not None and online.snapshot.time == back
    assert woken == events
    assert "back online after 100 s down" in caplog.text
    assert mon.state()["state"] == "ok" and mon.recoveries == 1


def test_a_blip_shorter_than_the_offline_delay_raises_neither_offline_nor_online(tmp_path, vtest_frames):
    mon, spool, clock, _ = _monitor(tmp_path, offline_alert_after_s=30.0)
    _feed(mon, clock, vtest_frames[:4])
    mon.source_state(False, "camera lobby: stream stalled")
    clock.t += 20
    mon.check()
    mon.source_state(True, "connected")
    _feed(mon, clock, vtest_frames[4:10])
    clock.t += 5
    mon.check()
    assert _events(spool) == [] and mon.recoveries == 0


def test_camera_that_never_delivers_raises_offline_without_snapshot(tmp_path):
    mon, spool, clock, _ = _monitor(tmp_path, offline_alert_after_s=5.0)
    clock.t += 5
    mon.check()
    (ev,) = _events(spool)
    assert ev.labels == [OFFLINE] and ev.snapshot is None and ev.clip is None
    assert not (spool.pending()[0].snapshot_path).exists()


def test_closed_monitor_raises_nothing(tmp_path):
    mon, spool, clock, _ = _monitor(tmp_path, offline_alert_after_s=5.0)
    mon.close()
    clock.t += 60
    mon.check()
    assert _events(spool) == []


def test_spool_failure_is_logged_not_raised(tmp_path, caplog):
    class BrokenSpool:
        def put(self, *a):
            raise OSError("disk full")

    clock = FakeClock()
    mon = HealthMonitor(CameraConfig(id="lobby", source="x.avi", offline_alert_after_s=1.0), DEVICE,
                        BrokenSpool(), clock=clock, wall=clock.wall)
    clock.t += 2
    with caplog.at_level(logging.ERROR):
        mon.check()
    assert "could not spool the camera_offline event" in caplog.text


@pytest.mark.slow
def test_camera_that_stays_down_reaches_the_cloud_as_a_health_alert(stack, default_model_dir, tmp_path, caplog):
    """End to end: a real EdgeDaemon (build_daemon wiring, real detector) with an RTSP camera whose server
    never answers; its camera_offline event travels spool -> edge_api -> Pub/Sub -> ingest -> Firestore, and
    the heartbeat reports the camera's health state."""
    import threading

    from google.cloud import firestore

    from infra.local.stack import free_port
    from tests.e2e.conftest import wait_for
    from vigint_edge.config import EdgeConfig
    from vigint_edge.daemon import build_daemon
    from vigint_edge.detection.detector import load_detector

    creds = stack.provision("healthy", "nuc-h")
    config = EdgeConfig.model_validate({
        "device": {"tenant_id": "healthy", "device_id": "nuc-h", "api_url": stack.urls["edge_api"],
                   "key_version": creds["key_version"]},
        "cameras": [{"id": "gate", "source": f"rtsp://viewer:pa55word@127.0.0.1:{free_port()}/stream",
                     "offline_alert_after_s": 3.0, "stall_timeout_s": 2.0, "reconnect_max_s": 1.0}],
        "spool": {"dir": str(tmp_path / "spool")},
        "status": {"port": 0},
        "heartbeat_s": 5,
    })
    detector = load_detector(default_model_dir / "model.xml", "CPU", num_threads=1)
    daemon = build_daemon(config, creds["secret"], detector=detector)
    runner = threading.Thread(target=daemon.run, daemon=True)
    caplog.set_level(logging.DEBUG, logger="vigint_edge")
    runner.start()
    db = firestore.Client(project=stack.project)
    events = db.collection("tenants").document("healthy").collection("events")
    device = db.collection("tenants").document("healthy").collection("devices").document("nuc-h")
    try:
        docs = wait_for(lambda: [d.to_dict() for d in events.stream()], timeout=60, what="the health event")
        # The daemon beats once at start (camera still "starting"), then every heartbeat_s.
        beat = wait_for(lambda: _offline_beat((device.get().to_dict() or {}).get("last_heartbeat")), timeout=30,
                        what="a heartbeat reporting the camera offline")
    finally:
        daemon.stop.set()
        runner.join(30)
    assert len(docs) == 1, "one alert for one outage"
    ev = docs[0]
    assert (ev["kind"], ev["severity"], ev["labels"], ev["camera_id"]) == \
        ("camera_health", "alert", [OFFLINE], "gate")
    assert ev["clip"] is None and ev["snapshot"] is None, "the camera never delivered a frame"
    gate = beat["cameras"]["gate"]
    assert gate["health"]["state"] == "offline" and gate["health"]["alerts"][OFFLINE] == 1
    assert gate["connected"] is False and gate["frames"] == 0
    assert beat["spool"]["delivered"] >= 1 and beat["version"]
    assert "rtsp://***@127.0.0.1" in caplog.text and "pa55word" not in caplog.text
    assert creds["secret"] not in caplog.text


def _offline_beat(beat):
    """The heartbeat if it reports camera ``gate`` offline, else None."""
    if beat and beat.get("cameras", {}).get("gate", {}).get("health", {}).get("state") == "offline":
        return beat
    return None
