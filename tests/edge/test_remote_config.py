"""Masks and alert zones from the cloud (``remote_config.camera_updates``): a cloud value that is not null
replaces the file's, null keeps it, alert zones are kept only for zones that exist; then the updated camera
through the real ``CameraPipeline`` (synthetic detector, real tracker, zones, masks and event cutting): a
detection inside a cloud mask makes no event, an alert zone nobody enters turns the alert into a detection."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np

from vigint_edge.capture.source import Frame
from vigint_edge.cloud import remote_config
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.delivery.spool import Spool
from vigint_edge.detection.detector import Detection, SyncDetector
from vigint_edge.events.pipeline import CameraPipeline

TOP = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]
BOTTOM = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
FILE_MASK = [[0.0, 0.9], [0.2, 0.9], [0.2, 1.0]]


def _file_camera(**kw) -> CameraConfig:
    return CameraConfig(id="lobby", source="unused.avi", zones=[{"name": "top", "points": TOP, "inertia": 1},
                                                                {"name": "bottom", "points": BOTTOM, "inertia": 1}],
                        alert_zones=["top"], masks=[FILE_MASK], **kw)


def _cloud(**fields) -> dict:
    zones = [{"name": "top", "points": TOP, "labels": [], "enter_s": 0, "exit_s": 0, "loiter_s": 0},
             {"name": "bottom", "points": BOTTOM, "labels": [], "enter_s": 0, "exit_s": 0, "loiter_s": 0}]
    cam = {"camera_id": "lobby", "name": "Lobby", "enabled": True, "labels": None, "alert_labels": None,
           "min_score": None, "zones": zones, "masks": None, "alert_zones": None, **fields}
    return {"config": {"cameras": [cam], "updated_at": None}, "commands": []}


def test_cloud_masks_and_alert_zones_replace_the_files_and_null_keeps_them(caplog):
    current = {"lobby": _file_camera()}
    # null: the file's masks and alert zones stay (the zones are the same, so nothing changes at all)
    assert remote_config.camera_updates(_cloud(), current) == {}

    street = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.08], [0.0, 0.08]]
    new = remote_config.camera_updates(_cloud(masks=[street], alert_zones=["bottom"]), current)["lobby"]
    assert [[list(p) for p in m] for m in new.masks] == [street]
    assert new.alert_zones == ["bottom"]
    assert new.source == "unused.avi" and [z.name for z in new.zones] == ["top", "bottom"]

    # [] is a value: no masks, alerts anywhere
    new = remote_config.camera_updates(_cloud(masks=[], alert_zones=[]), current)["lobby"]
    assert (new.masks, new.alert_zones) == ([], [])

    # names of zones the camera does not have are dropped, with a warning naming them
    with caplog.at_level(logging.WARNING, logger="vigint_edge.cloud.remote_config"):
        new = remote_config.camera_updates(_cloud(alert_zones=["bottom", "garage"]), current)["lobby"]
    assert new.alert_zones == ["bottom"]
    assert any("garage" in r.getMessage() and "lobby" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    # the file's alert zone follows the cloud's zones when the cloud leaves alert_zones null
    only_bottom = _cloud()
    only_bottom["config"]["cameras"][0]["zones"] = only_bottom["config"]["cameras"][0]["zones"][1:]
    with caplog.at_level(logging.WARNING, logger="vigint_edge.cloud.remote_config"):
        new = remote_config.camera_updates(only_bottom, current)["lobby"]
    assert new.alert_zones == [] and [z.name for z in new.zones] == ["bottom"]
    assert any("top" in r.getMessage() for r in caplog.records)

    # a broken mask (2 points, or outside the frame) leaves the camera as it was
    for bad in ([[[0.1, 0.1], [0.2, 0.2]]], [[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]]):
        assert remote_config.camera_updates(_cloud(masks=bad), current) == {}


class _Walker(SyncDetector):
    """A person walking along the top of the picture (model-input pixels, 300x300): bottom-centre at y 0.4."""

    input_size = (300, 300)

    def __init__(self):
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        x = 20 + 6 * self.calls
        return [Detection("person", 0.9, (x, 40, x + 30, 120))]


def _run(camera: CameraConfig, tmp_path) -> CameraPipeline:
    device = DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(_file_camera(), device, EventConfig(pre_roll_s=0, post_roll_s=1, max_length_s=60),
                          MotionConfig(), _Walker(), Spool(tmp_path / "spool", 10**9), tmp_path / "rec")
    pipe.reconfigure(camera)  # as the daemon does with camera_updates' answer
    pipe.fps = 10.0
    rng = np.random.default_rng(0)
    t0 = datetime.now(timezone.utc)
    for i in range(30):
        img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        pipe.process(Frame(image=img, t=i / 10, wall=t0 + timedelta(seconds=i / 10), index=i))
    pipe.finish()
    return pipe


def test_a_detection_in_a_cloud_mask_is_ignored_and_cloud_alert_zones_decide_the_alert(tmp_path):
    current = {"lobby": _file_camera()}
    as_file = _run(current["lobby"], tmp_path / "file")
    assert [(e.severity, e.zones) for e in as_file.finished] == [("alert", ["top"])], "the walker alerts"

    masked = remote_config.camera_updates(_cloud(masks=[TOP]), current)["lobby"]
    pipe = _run(masked, tmp_path / "masked")
    assert pipe.finished == [] and pipe.tracker.tracks == {}, "the person's feet are in the cloud's mask"

    elsewhere = remote_config.camera_updates(_cloud(alert_zones=["bottom"]), current)["lobby"]
    pipe = _run(elsewhere, tmp_path / "elsewhere")
    assert [e.severity for e in pipe.finished] == ["detection"], "nobody enters the cloud's alert zone"
