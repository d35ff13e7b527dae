"""Cloud commands with parameters and results, on the real stack: an operator queues a command through the
tenant API, the device gets it in its heartbeat answer, runs it and posts the outcome to edge_api's
``POST /v1/commands/{command_id}/result``; the operator reads the outcome back through the tenant API."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from google.cloud import firestore

from tests.edge.test_delivery import ScriptedServer
from vigint_edge.cloud import remote_config
from vigint_edge.cloud.api_client import EdgeApiClient, PermanentApiError
from vigint_edge.config import CameraConfig, DeviceConfig, EdgeConfig, SpoolConfig
from vigint_edge.daemon import EdgeDaemon
from vigint_edge.events.pipeline import CameraPipeline
from vigint_edge.delivery.spool import Spool

REPO = Path(__file__).resolve().parents[2]
CAMERA_PASSWORD = "s3cr3t-cam-pw"


def _admin(stack, *args) -> dict:
    env = {**os.environ, **stack.env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    out = subprocess.run([sys.executable, "-m", "vigint.admin", *args], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


class Site:
    """One provisioned tenant + device, an admin API key, and a daemon wired to the local stack."""

    def __init__(self, stack, tmp_path: Path, tenant: str, device: str = "nuc-1", cameras=None):
        self.stack, self.tenant, self.device = stack, tenant, device
        self.creds = stack.provision(tenant, device, recipients=[f"a@{tenant}.example"])
        key = _admin(stack, "apikey", "create", "--tenant", tenant, "--role", "admin", "--name", "Ops")["key"]
        self.auth = {"Authorization": f"Bearer {key}"}
        dev = DeviceConfig(tenant_id=tenant, device_id=device, api_url=stack.urls["edge_api"])
        cameras = cameras or [CameraConfig(id="lobby", source=f"rtsp://admin:{CAMERA_PASSWORD}@192.0.2.7/s1")]
        self.config = EdgeConfig(device=dev, cameras=cameras, spool=SpoolConfig(dir=tmp_path / "spool"))
        self.api = EdgeApiClient(stack.urls["edge_api"], tenant, device, self.creds["secret"],
                                 backoff_initial_s=0.05, backoff_max_s=0.2)
        self.spool = Spool(tmp_path / "spool", 10**8)
        self.daemon = EdgeDaemon(config=self.config, detector=None, spool=self.spool, deliverer=None, api=self.api)
        for cam in cameras:
            self.daemon.pipelines[cam.id] = CameraPipeline(cam, dev, self.config.events, self.config.motion, None,
                                                           self.spool, tmp_path / "rec")

    def queue(self, **body) -> str:
        r = requests.post(f"{self.stack.urls['tenant_api']}/v1/devices/{self.device}/commands", headers=self.auth,
                          json=body, timeout=10)
        assert r.status_code in (200, 201), r.text
        return r.json()["command_id"]

    def command(self, command_id: str) -> dict:
        r = requests.get(f"{self.stack.urls['tenant_api']}/v1/devices/{self.device}/commands/{command_id}",
                         headers=self.auth, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def beat(self) -> None:
        self.daemon.apply_heartbeat_answer(self.api.heartbeat(self.daemon.status()))

    def wait_final(self, command_id: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            cmd = self.command(command_id)
            if cmd["status"] in ("done", "failed") or time.monotonic() > deadline:
                return cmd
            time.sleep(0.2)


def test_report_status_answers_the_daemons_state_without_secrets(stack, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="vigint_edge")
    site = Site(stack, tmp_path, "cmd-status")
    cid = site.queue(type="report_status")
    site.beat()

    cmd = site.command(cid)
    assert cmd["status"] == "done", cmd
    result = cmd["result"]
    assert set(result["cameras"]) == {"lobby"}
    assert {"fps", "detector_ms", "health"} <= set(result["cameras"]["lobby"])
    assert {"items", "bytes"} <= set(result["spool"])
    assert result["uptime_s"] >= 0 and result["version"] and result["versions"]["openvino"]
    cam = result["config"]["cameras"][0]
    assert cam["id"] == "lobby" and cam["source"] == "rtsp://***@192.0.2.7/s1"
    assert cam["detect_fps"] == 5.0 and cam["enabled"] is True and "person" in cam["labels"]
    text = str(cmd)
    assert CAMERA_PASSWORD not in text and site.creds["secret"] not in text
    assert CAMERA_PASSWORD not in caplog.text and site.creds["secret"] not in caplog.text
    site.beat()
    assert site.command(cid)["status"] == "done", "handed over once, answered once"


def test_restart_reports_done_before_stopping_and_reload_config_is_done(stack, tmp_path):
    site = Site(stack, tmp_path, "cmd-restart")
    reload_id = site.queue(type="reload_config")
    restart_id = site.queue(type="restart")
    site.beat()
    assert site.daemon.stop.is_set() and site.daemon.restart_requested
    assert site.command(reload_id)["status"] == "done"
    assert site.command(restart_id)["status"] == "done"


def test_unknown_type_and_unknown_camera_are_reported_failed(stack, tmp_path):
    site = Site(stack, tmp_path, "cmd-unknown")
    now = datetime.now(timezone.utc)
    clip_id = site.queue(type="request_clip", camera_id="backyard", start=(now - timedelta(seconds=60)).isoformat(),
                         end=(now - timedelta(seconds=30)).isoformat())
    # A newer cloud may queue a type this device does not know: write one as the tenant API would.
    db = firestore.Client(project=stack.project)
    device = db.collection("tenants").document(site.tenant).collection("devices").document(site.device)
    _, ref = device.collection("commands").add({"type": "self_destruct", "status": "pending",
                                                "created_at": now, "params": {}})
    site.beat()

    clip = site.wait_final(clip_id)
    assert (clip["status"], clip["detail"]) == ("failed", "unknown camera")
    assert clip["event_id"] is None
    unknown = site.command(ref.id)
    assert (unknown["status"], unknown["detail"]) == ("failed", "unknown command type")
    assert not site.daemon.stop.is_set()


def test_request_clip_of_an_unrecorded_range_fails_with_the_pipelines_reason(stack, tmp_path):
    site = Site(stack, tmp_path, "cmd-clip")
    now = datetime.now(timezone.utc)
    cid = site.queue(type="request_clip", camera_id="lobby", start=(now - timedelta(days=2)).isoformat(),
                     end=(now - timedelta(days=2) + timedelta(seconds=20)).isoformat())
    started = time.monotonic()
    site.beat()
    assert time.monotonic() - started < 5, "the clip work runs off the heartbeat thread"
    cmd = site.wait_final(cid)
    assert cmd["status"] == "failed" and cmd["detail"] and cmd["event_id"] is None, cmd
    assert site.spool.pending() == []


@pytest.fixture(scope="module")
def h264_video(vtest_video, tmp_path_factory) -> Path:
    """The first 30 s of vtest.avi as an IP camera sends it (H.264, a keyframe every 2 s): recordable."""
    from vigint_edge.bench import make_h264

    return make_h264(vtest_video, tmp_path_factory.mktemp("commands") / "vtest-30s.mp4", seconds=30)


@pytest.mark.slow
def test_request_clip_of_a_recorded_range_spools_a_recording_and_reports_its_event(stack, tmp_path, h264_video,
                                                                                   default_model_dir):
    """A running daemon (real capture, real model) watching an H.264 camera at its own pace; the operator asks
    for 6 s it has recorded; the result names the spooled recording event."""
    from vigint_edge.daemon import build_daemon
    from vigint_edge.detection.detector import load_detector

    site = Site(stack, tmp_path, "cmd-clip-done")
    config = EdgeConfig.model_validate({
        "device": {"tenant_id": site.tenant, "device_id": site.device, "api_url": stack.urls["edge_api"],
                   "key_version": site.creds["key_version"]},
        "cameras": [{"id": "lobby", "source": str(h264_video), "realtime": True}],
        "spool": {"dir": str(tmp_path / "spool2")}, "status": {"enabled": False}, "heartbeat_s": 600,
    })
    detector = load_detector(default_model_dir / "model.xml", "CPU", num_threads=1)
    daemon = build_daemon(config, site.creds["secret"], detector=detector)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        time.sleep(16)
        now = datetime.now(timezone.utc)
        start, end = now - timedelta(seconds=12), now - timedelta(seconds=6)
        cid = site.queue(type="request_clip", camera_id="lobby", start=start.isoformat(), end=end.isoformat())
        daemon.apply_heartbeat_answer(site.api.heartbeat(daemon.status()))
        cmd = site.wait_final(cid, timeout=60)
    finally:
        daemon.stop.set()
        runner.join(30)
    assert cmd["status"] == "done", cmd
    assert cmd["event_id"] and cmd["event_id"].startswith("evt_")
    assert cmd["result"]["camera_id"] == "lobby" and cmd["result"]["kind"] == "recording"
    got_start = datetime.fromisoformat(cmd["result"]["start_time"].replace("Z", "+00:00"))
    got_end = datetime.fromisoformat(cmd["result"]["end_time"].replace("Z", "+00:00"))
    assert start - timedelta(seconds=11) <= got_start <= start + timedelta(seconds=1), "from the keyframe before"
    assert got_end >= end - timedelta(seconds=1)


# ----------------------------------------------------------------- result posting: bounded, never raising
def _daemon_with(api) -> EdgeDaemon:
    dev = DeviceConfig(tenant_id="demo", device_id="nuc-1", api_url=api.base_url)
    config = EdgeConfig(device=dev, cameras=[CameraConfig(id="lobby", source="x.avi")])
    return EdgeDaemon(config=config, detector=None, spool=None, deliverer=None, api=api)


def test_result_for_a_command_the_cloud_does_not_know_is_not_retried(stack, caplog):
    creds = stack.provision("cmd-404", "nuc-1")
    api = EdgeApiClient(stack.urls["edge_api"], "cmd-404", "nuc-1", creds["secret"])
    with pytest.raises(PermanentApiError) as err:
        api.command_result("NoSuchCommand0000001", {"status": "done"})
    assert err.value.status == 404
    with ScriptedServer([(404, {"error": "unknown command"}, {})]) as srv:
        api = EdgeApiClient(srv.url, "demo", "nuc-1", "s3cret-device", backoff_initial_s=0.01)
        with caplog.at_level(logging.WARNING, logger="vigint_edge"):
            _daemon_with(api).apply_heartbeat_answer({"commands": [{"command_id": "abc", "type": "reload_config"}]})
    assert len(srv.requests) == 1
    assert srv.requests[0][0] == "/v1/commands/abc/result"
    assert "does not know this command" in caplog.text and "s3cret-device" not in caplog.text


def test_result_retries_server_errors_a_few_times_then_gives_up(caplog):
    with ScriptedServer([(503, {}, {})] * 10) as srv:
        api = EdgeApiClient(srv.url, "demo", "nuc-1", "s3cret-device", backoff_initial_s=0.01,
                            result_backoff_max_s=0.05)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="vigint_edge"):
            _daemon_with(api).apply_heartbeat_answer({"commands": [{"command_id": "abc", "type": "reload_config"}]})
    assert len(srv.requests) == api.result_max_attempts == 3
    assert time.monotonic() - started < 5
    assert "could not report done" in caplog.text and "giving up" in caplog.text


def test_result_body_is_bounded():
    from vigint_edge.cloud.api_client import CommandResult

    assert len(CommandResult(status="failed", detail="x" * 500).detail) == 500
    with pytest.raises(ValueError):
        CommandResult(status="failed", detail="x" * 501)
    with pytest.raises(ValueError, match="more than 65536"):
        CommandResult(status="done", result={"blob": "x" * 70_000})
    with ScriptedServer([(200, {"command_id": "abc", "status": "failed"}, {})]) as srv:
        api = EdgeApiClient(srv.url, "demo", "nuc-1", "s3cret-device")
        api.command_result("abc", {"status": "failed", "detail": "y" * 2000})
        with pytest.raises(ValueError):
            api.command_result("../heartbeat", {"status": "done"})
    body = json.loads(srv.requests[0][2])
    assert body == {"status": "failed", "detail": "y" * 500, "result": {}, "event_id": None}
    assert len(srv.requests) == 1


def test_commands_are_parsed_into_validated_objects():
    cmds, rejected = remote_config.parse_commands({"commands": [
        {"command_id": "c1", "type": "report_status", "created_at": "2026-11-22T06:00:00.000000Z", "params": {}},
        {"command_id": "c2", "type": "request_clip",
         "params": {"camera_id": "lobby", "start": "2026-11-22T07:00:00+01:00", "end": "2026-11-22T06:00:30Z"}},
        {"command_id": "c3", "type": "request_clip", "params": {"camera_id": "lobby", "start": "2026-11-22T06:00:00"}},
        {"command_id": "c4", "type": "format_disk"},
        {"type": "restart"},
    ]})
    assert [(c.command_id, c.type) for c in cmds] == [("c1", "report_status"), ("c2", "request_clip")]
    assert cmds[1].params.start == datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
    assert cmds[1].params.start.utcoffset() == timedelta(0)
    assert [r.command_id for r in rejected] == ["c3", "c4"]
    assert "start" in rejected[0].detail and "end" in rejected[0].detail
    assert rejected[1].detail == "unknown command type"
