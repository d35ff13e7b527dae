"""What ``edge_api``'s ``POST /v1/heartbeat`` hands back to a device: its cameras' configuration and the
commands queued for it (docs/contracts.md, "edge_api").

``config`` is ``{"cameras": [{"camera_id", "name", "enabled", "labels", "alert_labels", "min_score",
"zones": [{"name", "points", "labels", "enter_s", "exit_s", "loiter_s"}], "masks": [[[x, y], ...]] | null,
"alert_zones": [zone name] | null}], "updated_at": RFC3339|null}`` (points 0..1 of the frame; ``masks``:
polygons where detections are ignored; ``alert_zones``: zones an alert label must be inside for an alert,
``[]`` anywhere; ``labels``/``alert_labels``/``min_score``/``masks``/``alert_zones`` null: keep the device's
own), or ``{}`` when the
tenant has configured no camera for this device in the cloud (the device keeps its local configuration). ``commands`` is
``[{"command_id", "type", "created_at", "params"}]`` (``vigint.commands.wire``; ``params`` ``{}`` or, for
``request_clip``, ``{"camera_id", "start", "end"}``), oldest first; each is marked ``delivered`` as it is handed
over, so it is handed over once (a heartbeat answer lost in transit loses its commands: they are
advisory, e.g. ``reload_config``; the device reports the outcome with ``POST /v1/commands/{id}/result``).
"""

from __future__ import annotations

import datetime as dt
import logging

from google.cloud import firestore as fs

from vigint import commands, pipeline
from vigint.tenant_api.cameras import masks_from_store, zones_from_store

log = logging.getLogger(__name__)

MAX_COMMANDS = 20
_CAMERA_FIELDS = ("name", "enabled", "labels", "alert_labels", "min_score", "zones", "masks", "alert_zones")


def device_config(tenant_id: str, device_id: str) -> dict:
    """The configuration of the device's cameras (see the module docstring), cameras by id; ``{}`` if none."""
    q = pipeline.tenant_ref(tenant_id).collection("cameras").where(filter=fs.FieldFilter("device_id", "==", device_id))
    cameras, newest = [], None
    for snap in sorted(q.stream(), key=lambda s: s.id):
        doc = snap.to_dict()
        cameras.append({"camera_id": snap.id, **{k: doc.get(k) for k in _CAMERA_FIELDS}})
        upd = doc.get("updated_at")
        if isinstance(upd, dt.datetime) and (newest is None or upd > newest):
            newest = upd
    for cam in cameras:
        cam["enabled"] = bool(cam["enabled"]) if cam["enabled"] is not None else True
        cam["zones"] = zones_from_store(cam["zones"])
        cam["masks"] = masks_from_store(cam["masks"])
        cam["alert_zones"] = list(cam["alert_zones"]) if isinstance(cam["alert_zones"], list) else None
    if not cameras:
        return {}
    return {"cameras": cameras, "updated_at": commands.rfc3339(newest)}


def take_pending_commands(device_ref, now: dt.datetime) -> list[dict]:
    """The device's pending commands, oldest first (at most ``MAX_COMMANDS``), each marked delivered."""
    q = device_ref.collection("commands").where(filter=fs.FieldFilter("status", "==", "pending"))
    snaps = sorted(q.stream(), key=lambda s: (s.to_dict().get("created_at") or now, s.id))[:MAX_COMMANDS]
    out = []
    for snap in snaps:
        doc = snap.to_dict()
        snap.reference.update({"status": "delivered", "delivered_at": now})
        out.append(commands.wire(snap.id, doc))
    if out:
        log.info("heartbeat: %d command(s) handed to %s/%s", len(out), device_ref.parent.parent.id, device_ref.id)
    return out
