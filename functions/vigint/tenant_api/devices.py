"""Handlers: devices (``/v1/devices``), enrollment codes, key rotation and revocation (commands:
``vigint.tenant_api.commands``)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from vigint import pipeline, provisioning
from vigint.schema import SLUG_PATTERN
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request, not_found

log = logging.getLogger(__name__)

# A device whose last heartbeat is younger than this is "online" (5 x the edge's default 60 s interval).
ONLINE_WINDOW_S = 300
MAX_DEVICES = 1000


def health(doc: dict, now: dt.datetime) -> str:
    """``revoked``, ``never_seen``, ``online`` (heartbeat within ``ONLINE_WINDOW_S``) or ``stale``."""
    if doc.get("status") != "active":
        return "revoked"
    last = doc.get("last_heartbeat_at")
    if not isinstance(last, dt.datetime):
        return "never_seen"
    return "online" if (now - last).total_seconds() <= ONLINE_WINDOW_S else "stale"


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def device_out(device_id: str, doc: dict, now: dt.datetime) -> m.DeviceOut:
    """The API view of ``tenants/{t}/devices/{device_id}``."""
    reported = _dict(doc.get("last_heartbeat"))
    return m.DeviceOut(
        device_id=device_id, name=str(doc.get("name") or device_id), status=str(doc.get("status") or "unknown"),
        key_version=int(doc.get("key_version") or 1), health=health(doc, now),
        created_at=doc.get("created_at"), enrolled_at=doc.get("enrolled_at"),
        last_heartbeat_at=doc.get("last_heartbeat_at"),
        version=str(reported["version"]) if reported.get("version") else None,
        cameras=_dict(reported.get("cameras")), spool=_dict(reported.get("spool")),
    )


def _device_ref(req: Request):
    return pipeline.tenant_ref(req.tenant_id).collection("devices").document(req.params["device_id"])


def existing_device(req: Request) -> tuple[Any, dict]:
    """``(DocumentReference, data)`` of the path's device in the key's tenant.

    Raises:
        ApiError: 404 ``device not found`` (also for another tenant's device).
    """
    ref = _device_ref(req)
    snap = ref.get()
    if not snap.exists:
        raise not_found("device not found")
    return ref, snap.to_dict()


def list_devices(req: Request):
    """``GET /v1/devices``: every device of the tenant (at most ``MAX_DEVICES``), by id."""
    col = pipeline.tenant_ref(req.tenant_id).collection("devices")
    snaps = col.order_by("__name__").limit(MAX_DEVICES).stream()
    return m.DeviceList(devices=[device_out(s.id, s.to_dict(), req.now) for s in snaps]), 200


def get_device(req: Request):
    """``GET /v1/devices/{device_id}``."""
    _, doc = existing_device(req)
    return device_out(req.params["device_id"], doc, req.now), 200


def revoke_device(req: Request):
    """``POST /v1/devices/{device_id}/revoke``: the device's requests and messages are refused from now on."""
    ref, doc = existing_device(req)
    if doc.get("status") != "revoked":
        ref.update({"status": "revoked", "revoked_at": req.now})
        log.info("device %s/%s revoked by key %s", req.tenant_id, ref.id, req.principal.key_id)
    return device_out(ref.id, ref.get().to_dict(), req.now), 200


def rotate_key(req: Request):
    """``POST /v1/devices/{device_id}/rotate-key``: new secret (shown once); the old one stops working."""
    ref, doc = existing_device(req)
    if doc.get("status") != "active":
        raise ApiError(409, "device is revoked")
    creds = provisioning.rotate_device_key(req.tenant_id, ref.id)
    log.info("device %s/%s key rotated to version %d by key %s", req.tenant_id, ref.id, creds["key_version"],
             req.principal.key_id)
    return m.DeviceCredentials(**creds), 200


def create_enrollment_code(req: Request):
    """``POST /v1/devices/enrollment-codes``: a one-use code for a new device (shown once)."""
    body: m.EnrollmentCodeIn = req.body
    if pipeline.tenant_ref(req.tenant_id).collection("devices").document(body.device_id).get().exists:
        raise ApiError(409, "a device with this id already exists", "device_id")
    try:
        out = provisioning.create_enrollment_code(req.tenant_id, body.device_id, body.name, body.ttl_seconds,
                                                  created_by=req.principal.name, now=req.now)
    except provisioning.ProvisioningError as exc:
        raise ApiError(409 if "exists" in str(exc) else 400, str(exc), "device_id") from None
    return m.EnrollmentCodeOut(code=out["code"], device_id=out["device_id"], expires_at=out["expires_at"]), 201


PARAMS = {"device_id": SLUG_PATTERN}
