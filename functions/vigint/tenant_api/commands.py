"""Handlers: device commands (``/v1/devices/{device_id}/commands``), their parameters and results.

A command waits in ``tenants/{t}/devices/{d}/commands/{command_id}`` (layout in ``vigint.commands``) until the
device's next heartbeat hands it over (``vigint.tenant_api.edge_sync``); the device reports the outcome
through ``edge_api`` (``POST /v1/commands/{command_id}/result``). Listing is newest first (``created_at``
descending, then id descending), paged like the event listings (``vigint.tenant_api.events.scan_page``, its
cursor made of the last command's ``created_at`` and id).
"""

from __future__ import annotations

import logging

from google.cloud import firestore as fs

from vigint import commands
from vigint.tenant_api import models as m
from vigint.tenant_api.cameras import cameras_col
from vigint.tenant_api.devices import PARAMS as DEVICE_PARAMS
from vigint.tenant_api.devices import existing_device
from vigint.tenant_api.events import scan_page
from vigint.tenant_api.http import ApiError, Request, not_found

log = logging.getLogger(__name__)

PARAMS = {**DEVICE_PARAMS, "command_id": commands.COMMAND_ID_PATTERN}
_CLIP_FIELDS = ("camera_id", "start", "end")


def command_out(command_id: str, doc: dict) -> m.CommandOut:
    """The API view of a command document."""
    fields = {k: doc.get(k) for k in ("status", "created_at", "created_by", "delivered_at", "completed_at",
                                      "detail", "event_id")}
    return m.CommandOut(command_id=command_id, type=str(doc.get("type") or ""), params=commands.params_of(doc),
                        result=commands.stored_result(doc), **{**fields, "status": str(fields["status"] or "")})


def clip_params(tenant_id: str, device_id: str, body: m.CommandIn, now) -> dict:
    """The parameters of a ``request_clip`` command (times as RFC 3339 UTC strings).

    Raises:
        ApiError: 400 naming the missing or out-of-range field (``camera_id``, ``start`` or ``end``), or a
            ``camera_id`` that is not one of the device's cameras configured in the cloud (when it has any).
    """
    for name in _CLIP_FIELDS:
        if getattr(body, name) is None:
            raise ApiError(400, f"{name}: required for request_clip", name)
    start, end = body.start, body.end
    if end <= start:
        raise ApiError(400, "end: must be after start", "end")
    if (end - start).total_seconds() > m.MAX_CLIP_REQUEST_S:
        raise ApiError(400, f"end: at most {m.MAX_CLIP_REQUEST_S} s after start", "end")
    if (now - start).total_seconds() > m.MAX_CLIP_REQUEST_AGE_S:
        raise ApiError(400, f"start: at most {m.MAX_CLIP_REQUEST_AGE_S // 86400} days in the past", "start")
    if (end - now).total_seconds() > m.MAX_CLIP_REQUEST_AHEAD_S:
        raise ApiError(400, f"end: at most {m.MAX_CLIP_REQUEST_AHEAD_S} s in the future", "end")
    configured = cameras_col(tenant_id).where(filter=fs.FieldFilter("device_id", "==", device_id))
    known = {snap.id for snap in configured.stream()}
    if known and body.camera_id not in known:
        raise ApiError(400, f"camera_id: not a camera of device {device_id}", "camera_id")
    return {"camera_id": body.camera_id, "start": commands.rfc3339(start), "end": commands.rfc3339(end)}


def create_command(req: Request):
    """``POST /v1/devices/{device_id}/commands``: queued for the device's next heartbeat (409 when the device
    is revoked; 400 naming the field for bad parameters, see ``CommandIn``)."""
    ref, doc = existing_device(req)
    if doc.get("status") != "active":
        raise ApiError(409, "device is revoked")
    body: m.CommandIn = req.body
    if body.type == "request_clip":
        params = clip_params(req.tenant_id, ref.id, body, req.now)
    else:
        extra = next((name for name in _CLIP_FIELDS if getattr(body, name) is not None), None)
        if extra is not None:
            raise ApiError(400, f"{extra}: not a parameter of {body.type}", extra)
        params = {}
    record = {"type": body.type, "params": params, "status": "pending", "created_at": req.now,
              "created_by": req.principal.name}
    _, cref = ref.collection("commands").add(record)
    log.info("command %s (%s) queued for %s/%s by key %s", cref.id, body.type, req.tenant_id, ref.id,
             req.principal.key_id)
    return command_out(cref.id, record), 201


def list_commands(req: Request):
    """``GET /v1/devices/{device_id}/commands``: the device's commands, newest first, ``limit`` per page."""
    ref, _ = existing_device(req)
    q: m.CommandsQuery = req.query
    page, nxt = scan_page(ref.collection("commands"), limit=q.limit, cursor=q.cursor, order_field="created_at")
    return m.CommandPage(commands=[command_out(s.id, s.to_dict()) for s in page], next_cursor=nxt), 200


def get_command(req: Request):
    """``GET /v1/devices/{device_id}/commands/{command_id}``: the command and the device's result."""
    ref, _ = existing_device(req)
    snap = ref.collection("commands").document(req.params["command_id"]).get()
    if not snap.exists:
        raise not_found("command not found")
    return command_out(snap.id, snap.to_dict()), 200
