"""Cloud → edge on the real stack: enrollment with a one-time code, camera zones set through the tenant API
reaching the device on its heartbeat, and a restart command."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from vigint_edge.cloud.api_client import EdgeApiClient
from vigint_edge.config import CameraConfig, DeviceConfig, EdgeConfig, SpoolConfig

REPO = Path(__file__).resolve().parents[2]


def _admin(stack, *args) -> dict:
    env = {**os.environ, **stack.env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    out = subprocess.run([sys.executable, "-m", "vigint.admin", *args], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def _enroll(stack, code, cfg, secret):
    env = {**os.environ, "PYTHONPATH": str(REPO / "edge_daemon")}
    return subprocess.run([sys.executable, "-m", "vigint_edge.cli", "enroll", "--code", code, "--api-url",
                           stack.urls["edge_api"], "--config", str(cfg), "--secret-file", str(secret)],
                          env=env, capture_output=True, text=True)


def test_enrollment_code_becomes_working_credentials_once(stack, tmp_path):
    stack.provision("enrolled", "nuc-0", recipients=["a@enrolled.example"])
    code = _admin(stack, "device", "enroll-code", "--tenant", "enrolled", "--id", "nuc-7")["code"]
    cfg, secret = tmp_path / "config.yaml", tmp_path / "device-secret"
    cfg.write_text("cameras:\n  - {id: gate, source: rtsp://192.0.2.1/s}\n")

    out = _enroll(stack, code, cfg, secret)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    written = yaml.safe_load(cfg.read_text())
    assert written["device"]["tenant_id"] == "enrolled" and written["device"]["device_id"] == "nuc-7"
    assert written["cameras"][0]["id"] == "gate", "the rest of the file is kept"
    assert secret.read_text() not in out.stdout + out.stderr
    api = EdgeApiClient(stack.urls["edge_api"], "enrolled", "nuc-7", secret.read_text())
    assert "commands" in api.heartbeat({"cameras": {}, "spool": {}, "version": "test"})

    again = _enroll(stack, code, tmp_path / "c2.yaml", tmp_path / "s2")
    assert again.returncode == 2 and "already used" in again.stderr


def test_zones_from_the_tenant_api_reach_the_pipeline_and_restart_stops_the_daemon(stack, tmp_path):
    from vigint_edge.daemon import EdgeDaemon
    from vigint_edge.events.pipeline import CameraPipeline
    from vigint_edge.delivery.spool import Spool

    creds = stack.provision("synced", "nuc-1", recipients=["a@synced.example"])
    key = _admin(stack, "apikey", "create", "--tenant", "synced", "--role", "admin", "--name", "Ops")["key"]
    auth = {"Authorization": f"Bearer {key}"}
    zone = {"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]], "enter_s": 1.0, "loiter_s": 4}
    r = requests.post(f"{stack.urls['tenant_api']}/v1/cameras", headers=auth, timeout=10,
                      json={"camera_id": "lobby", "device_id": "nuc-1", "alert_labels": ["person", "car"],
                            "zones": [zone]})
    assert r.status_code == 201, r.text
    r = requests.post(f"{stack.urls['tenant_api']}/v1/devices/nuc-1/commands", headers=auth, timeout=10,
                      json={"type": "restart"})
    assert r.status_code in (200, 201), r.text

    device = DeviceConfig(tenant_id="synced", device_id="nuc-1", api_url=stack.urls["edge_api"])
    config = EdgeConfig(device=device, cameras=[CameraConfig(id="lobby", source="x.avi")],
                        spool=SpoolConfig(dir=tmp_path / "spool"))
    api = EdgeApiClient(stack.urls["edge_api"], "synced", "nuc-1", creds["secret"])
    spool = Spool(tmp_path / "spool", 10**8)
    daemon = EdgeDaemon(config=config, detector=None, spool=spool, deliverer=None, api=api)
    daemon.pipelines["lobby"] = CameraPipeline(config.cameras[0], device, config.events, config.motion, None,
                                               spool, tmp_path / "rec")
    daemon.apply_heartbeat_answer(api.heartbeat(daemon.status()))
    restart_id = r.json()["command_id"]
    r = requests.get(f"{stack.urls['tenant_api']}/v1/devices/nuc-1/commands/{restart_id}", headers=auth, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "done", "the device reported the restart before stopping"

    camera = daemon.pipelines["lobby"].camera
    assert [z.name for z in camera.zones] == ["door"]
    assert camera.zones[0].loitering_s == 4 and camera.zones[0].inertia == 5, "1 s at 5 detector fps"
    assert camera.alert_labels == ["person", "car"] and camera.enabled
    assert daemon.stop.is_set() and daemon.restart_requested
    daemon.stop.clear()
    r = requests.patch(f"{stack.urls['tenant_api']}/v1/cameras/lobby", headers=auth, timeout=10,
                       json={"enabled": False})
    assert r.status_code == 200, r.text
    daemon.apply_heartbeat_answer(api.heartbeat(daemon.status()))
    assert not daemon.stop.is_set(), "a command is handed over once"
    assert daemon.pipelines["lobby"].camera.enabled is False
    assert [z.name for z in daemon.pipelines["lobby"].camera.zones] == ["door"]


def test_label_added_in_the_cloud_is_detected_from_the_next_frame(stack, tmp_path, default_model_dir, vtest_video):
    """The detector's label filter starts as the file's labels (only "car"); the operator adds "person" to the
    camera through the tenant API; after the next heartbeat the real model's person detections come through."""
    import cv2

    from vigint_edge.daemon import build_daemon
    from vigint_edge.events.pipeline import CameraPipeline

    creds = stack.provision("relabel", "nuc-1")
    key = _admin(stack, "apikey", "create", "--tenant", "relabel", "--role", "admin", "--name", "Ops")["key"]
    auth = {"Authorization": f"Bearer {key}"}
    r = requests.post(f"{stack.urls['tenant_api']}/v1/cameras", headers=auth, timeout=10,
                      json={"camera_id": "lobby", "device_id": "nuc-1", "labels": ["car"]})
    assert r.status_code == 201, r.text
    config = EdgeConfig.model_validate({
        "device": {"tenant_id": "relabel", "device_id": "nuc-1", "api_url": stack.urls["edge_api"]},
        "cameras": [{"id": "lobby", "source": str(vtest_video), "labels": ["car"]}],
        "model": {"path": str(default_model_dir / "model.xml")},
        "spool": {"dir": str(tmp_path / "spool")}, "status": {"enabled": False},
    })
    daemon = build_daemon(config, creds["secret"])  # the real composition root: detector filter from the file
    daemon.pipelines["lobby"] = CameraPipeline(config.cameras[0], config.device, config.events, config.motion,
                                               daemon.detector, daemon.spool, tmp_path / "rec")
    cap = cv2.VideoCapture(str(vtest_video))
    frames = []
    for i in range(201):
        ok, img = cap.read()
        assert ok
        if i in (100, 200):
            frames.append(img)
    cap.release()

    def labels() -> set[str]:
        return {d.label for f in frames for d in daemon.detector.detect(f)}

    assert "person" not in labels()
    daemon.apply_heartbeat_answer(daemon.api.heartbeat(daemon.status()))
    assert "person" not in labels(), "the cloud says car only, as the file"
    r = requests.patch(f"{stack.urls['tenant_api']}/v1/cameras/lobby", headers=auth, timeout=10,
                       json={"labels": ["car", "person"]})
    assert r.status_code == 200, r.text
    daemon.apply_heartbeat_answer(daemon.api.heartbeat(daemon.status()))
    assert daemon.pipelines["lobby"].camera.labels == ["car", "person"]
    assert "person" in labels(), "person detections come through without a restart"
    r = requests.patch(f"{stack.urls['tenant_api']}/v1/cameras/lobby", headers=auth, timeout=10,
                       json={"labels": ["person"]})
    daemon.apply_heartbeat_answer(daemon.api.heartbeat(daemon.status()))
    assert labels() == {"person"}, "a label removed in the cloud is no longer detected either"
    # A lower minimum score from the cloud lowers the shared detector's floor too (it was the file's 0.5).
    assert daemon.detector.score_threshold == 0.5
    before = [d.score for f in frames for d in daemon.detector.detect(f)]
    r = requests.patch(f"{stack.urls['tenant_api']}/v1/cameras/lobby", headers=auth, timeout=10,
                       json={"min_score": 0.3})
    assert r.status_code == 200, r.text
    daemon.apply_heartbeat_answer(daemon.api.heartbeat(daemon.status()))
    assert daemon.pipelines["lobby"].camera.min_score == 0.3
    after = [d.score for f in frames for d in daemon.detector.detect(f)]
    assert daemon.detector.score_threshold == 0.3 and min(before) >= 0.5
    assert len(after) > len(before) and min(after) < 0.5, "detections between 0.3 and 0.5 now come through"
