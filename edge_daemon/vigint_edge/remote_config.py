"""Cloud → edge: the camera settings and commands a heartbeat answer carries.

``edge_api``'s ``POST /v1/heartbeat`` answers ``{"config": {"cameras": [...], "updated_at"}, "commands":
[...]}`` (see ``functions/vigint/tenant_api/edge_sync.py``); nothing listens on the NUC, the device pulls.
A camera in the answer that this device also has in its file gets the cloud's labels, alert labels,
minimum score, enabled flag and zones (the file keeps its source, filters and masks); cameras unknown here are ignored
with a warning. Cloud zones give times in seconds (``enter_s``, ``exit_s``, ``loiter_s``); the edge counts
inertia in detector frames, so ``inertia = ceil(max(enter_s, exit_s) * detect_fps)`` (at least 1).
"""

from __future__ import annotations

import logging
import math

from pydantic import ValidationError

from vigint_edge.config import CameraConfig

log = logging.getLogger(__name__)
COMMANDS = ("reload_config", "restart")


def camera_updates(answer: dict, cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
    """New configurations for the cameras the answer changes.

    Args:
        answer: the heartbeat answer (JSON object).
        cameras: this device's cameras by id, as now configured.

    Returns:
        camera id → validated new ``CameraConfig`` (only cameras whose settings differ).
    """
    remote = (answer.get("config") or {}).get("cameras") or []
    out: dict[str, CameraConfig] = {}
    for cam in remote:
        cid = cam.get("camera_id")
        current = cameras.get(cid)
        if current is None:
            log.warning("heartbeat: the cloud configures camera %r, which this device does not have", cid)
            continue
        update = {k: cam[k] for k in ("labels", "alert_labels", "min_score", "enabled") if cam.get(k) is not None}
        zones = [
            {"name": z["name"], "points": z["points"], "labels": z.get("labels") or [],
             "loitering_s": float(z.get("loiter_s") or 0),
             "inertia": max(1, math.ceil(max(z.get("enter_s") or 0, z.get("exit_s") or 0) * current.detect_fps))}
            for z in cam.get("zones") or []
        ]
        names = {z["name"] for z in zones}
        update["zones"] = zones
        update["alert_zones"] = [z for z in current.alert_zones if z in names]
        try:
            new = CameraConfig.model_validate({**current.model_dump(), **update})
        except ValidationError as exc:
            log.warning("heartbeat: ignoring the cloud's settings for camera %s: %s", cid, exc)
            continue
        if new != current:
            out[cid] = new
    return out


def commands(answer: dict) -> list[str]:
    """The command types in the answer, known ones only, in order (unknown ones are logged and skipped)."""
    out = []
    for c in answer.get("commands") or []:
        kind = c.get("type")
        if kind in COMMANDS:
            out.append(kind)
        else:
            log.warning("heartbeat: unknown command %r ignored", kind)
    return out
