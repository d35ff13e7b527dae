"""Handlers: cameras and their zones (``/v1/cameras``).

``tenants/{t}/cameras/{camera_id}``: device_id, name, enabled, labels, alert_labels, min_score (null:
the device's own defaults), zones ``[{name, points: [{x, y}, ...] (0..1), labels, enter_s, exit_s,
loiter_s}]``, masks ``[{points: [{x, y}, ...]}]`` (polygons where the device ignores detections) and
alert_zones ``[zone name]`` (an alert also needs an alert label inside one of them; ``[]``: anywhere) — both
null or absent: the device keeps its own —, created_at, updated_at. Firestore cannot hold arrays of arrays,
so points are stored as ``{x, y}`` maps and shown (API, heartbeat) as ``[x, y]`` pairs; a mask as
``{"points": [...]}`` (as zones are) and shown as its list of points. Each camera belongs to one device of the
same tenant, which gets the configuration of its cameras on its next heartbeat (``vigint.tenant_api.edge_sync``).
"""

from __future__ import annotations

import logging

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import pipeline
from vigint.schema import SLUG_PATTERN
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request, not_found

log = logging.getLogger(__name__)

MAX_CAMERAS = 1000
PARAMS = {"camera_id": SLUG_PATTERN}


def cameras_col(tenant_id: str):
    """``tenants/{tenant_id}/cameras``."""
    return pipeline.tenant_ref(tenant_id).collection("cameras")


def zones_to_store(zones: list[dict]) -> list[dict]:
    """Zones as stored: each point ``[x, y]`` becomes ``{"x": x, "y": y}``."""
    return [{**z, "points": [{"x": p[0], "y": p[1]} for p in z.get("points") or []]} for z in zones]


def zones_from_store(zones) -> list[dict]:
    """Inverse of ``zones_to_store`` (tolerates malformed stored points by dropping them)."""
    out = []
    for z in zones if isinstance(zones, list) else []:
        if isinstance(z, dict):
            pts = [[p.get("x"), p.get("y")] for p in z.get("points") or [] if isinstance(p, dict)]
            out.append({**z, "points": pts})
    return out


def masks_to_store(masks: list[list[list[float]]] | None) -> list[dict] | None:
    """Masks as stored: ``[[x, y], ...]`` becomes ``{"points": [{"x": x, "y": y}, ...]}``; None stays None."""
    if masks is None:
        return None
    return [{"points": [{"x": p[0], "y": p[1]} for p in mask]} for mask in masks]


def masks_from_store(masks) -> list[list[list[float]]] | None:
    """Inverse of ``masks_to_store`` (None or absent: None; malformed stored points are dropped)."""
    if not isinstance(masks, list):
        return None
    return [[[p.get("x"), p.get("y")] for p in mask.get("points") or [] if isinstance(p, dict)]
            for mask in masks if isinstance(mask, dict)]


def camera_out(camera_id: str, doc: dict) -> m.CameraOut:
    """The API view of a camera document."""
    fields = {k: v for k, v in doc.items() if k in m.CameraOut.model_fields and k != "camera_id"}
    fields["zones"] = zones_from_store(doc.get("zones"))
    fields["masks"] = masks_from_store(doc.get("masks"))
    return m.CameraOut(camera_id=camera_id, **fields)


def list_cameras(req: Request):
    """``GET /v1/cameras[?device_id=]``, by id."""
    q = cameras_col(req.tenant_id)
    if req.query.device_id:
        q = q.where(filter=fs.FieldFilter("device_id", "==", req.query.device_id))
    snaps = sorted(q.limit(MAX_CAMERAS).stream(), key=lambda s: s.id)
    return m.CameraList(cameras=[camera_out(s.id, s.to_dict()) for s in snaps]), 200


def _existing(req: Request):
    ref = cameras_col(req.tenant_id).document(req.params["camera_id"])
    snap = ref.get()
    if not snap.exists:
        raise not_found("camera not found")
    return ref, snap.to_dict()


def get_camera(req: Request):
    """``GET /v1/cameras/{camera_id}``."""
    ref, doc = _existing(req)
    return camera_out(ref.id, doc), 200


def create_camera(req: Request):
    """``POST /v1/cameras``: the device must be one of the tenant's (else 404, field ``device_id``)."""
    body: m.CameraIn = req.body
    dev = pipeline.tenant_ref(req.tenant_id).collection("devices").document(body.device_id).get()
    if not dev.exists:
        raise ApiError(404, "device not found", "device_id")
    doc = body.model_dump(mode="json", exclude={"camera_id"})
    doc["name"] = doc["name"] or body.camera_id
    doc["zones"] = zones_to_store(doc["zones"])
    doc["masks"] = masks_to_store(doc["masks"])
    doc.update({"created_at": req.now, "updated_at": req.now})
    try:
        cameras_col(req.tenant_id).document(body.camera_id).create(doc)
    except gexc.AlreadyExists:
        raise ApiError(409, "a camera with this id already exists", "camera_id") from None
    log.info("camera %s/%s created on device %s", req.tenant_id, body.camera_id, body.device_id)
    return camera_out(body.camera_id, doc), 201


def patch_camera(req: Request):
    """``PATCH /v1/cameras/{camera_id}``: fields present replace the stored ones.

    Raises:
        ApiError: 400 (field ``alert_zones``) when ``alert_zones`` names a zone the camera does not have (the
            body's zones when it has some, else the stored ones).
    """
    ref, doc = _existing(req)
    updates = req.body.model_dump(mode="json", exclude_unset=True)
    if updates:
        zones = updates["zones"] if "zones" in updates else zones_from_store(doc.get("zones"))
        if updates.get("alert_zones") is not None:
            unknown = m.unknown_alert_zones(updates["alert_zones"], zones)
            if unknown:
                raise ApiError(400, f"names zones that are not defined: {', '.join(unknown)}", "alert_zones")
        elif "zones" in updates and "alert_zones" not in updates and isinstance(doc.get("alert_zones"), list):
            # The stored alert zones follow the new zones: a removed zone stops being one.
            names = {z["name"] for z in zones}
            kept = [n for n in doc["alert_zones"] if n in names]
            if kept != doc["alert_zones"]:
                updates["alert_zones"] = kept
        if "zones" in updates:
            updates["zones"] = zones_to_store(updates["zones"])
        if "masks" in updates:
            updates["masks"] = masks_to_store(updates["masks"])
        updates["updated_at"] = req.now
        ref.update(updates)
        doc.update(updates)
    return camera_out(ref.id, doc), 200


def erase_camera(req: Request):
    """``POST /v1/cameras/{camera_id}/erase``: deletes everything the camera recorded (events, deliveries,
    links, clips and snapshots in GCS) except events under legal hold (counted in ``held_kept``); its
    configuration stays. Works for a camera id the cloud has no configuration for (events are filed under
    the edge's camera id), always within the key's tenant. The erase lasts: a tombstone makes ingest drop
    every later message of an event that started before it (``vigint.retention.delete_camera``). Audited
    (``camera.erase``)."""
    from vigint import audit, retention

    camera_id = req.params["camera_id"]
    counts = retention.delete_camera(req.tenant_id, camera_id, now=req.now)
    out = {k: int(counts.get(k, 0)) for k in ("events", "objects", "links", "documents", "held_kept")}
    audit.record(req.tenant_id, actor=audit.actor_of(req.principal), action="camera.erase", target_kind="camera",
                 target_id=camera_id, details=out, now=req.now)
    log.info("camera %s/%s erased: %s", req.tenant_id, camera_id, counts)
    return {"camera_id": camera_id, **out}, 200


def delete_camera(req: Request):
    """``DELETE /v1/cameras/{camera_id}``: its events stay."""
    ref, doc = _existing(req)
    ref.delete()
    log.info("camera %s/%s deleted", req.tenant_id, ref.id)
    return camera_out(ref.id, doc), 200
