"""Handlers of evidence: legal holds (``/v1/events/{event_id}/hold``, ``/release``;
``/v1/cameras/{camera_id}/holds``) and evidence export (``/v1/events/{event_id}/export``, ``/v1/export-key``).

An admin key places and releases holds; any key lists a camera's holds. What a hold does (retention, erase and
tenant deletion skip the held events; TTL fields parked; Cloud Storage temporary holds) is in
``vigint.legal_hold``. Each hold and release is an audit entry with the API key as actor. Another tenant's
event, camera hold or hold id is answered 404 like a missing one.
"""

from __future__ import annotations

from vigint import audit, legal_hold
from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request

EVENT_PARAMS = {"event_id": EVENT_ID_PATTERN}
CAMERA_PARAMS = {"camera_id": SLUG_PATTERN}
CAMERA_HOLD_PARAMS = {"camera_id": SLUG_PATTERN, "hold_id": r"^hold_[0-9a-f]{16}$"}


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except legal_hold.HoldError as exc:
        raise ApiError(exc.status, str(exc)) from None


def hold_event(req: Request):
    """``POST /v1/events/{event_id}/hold`` ``{"reason"}``: the event is kept until released (200, idempotent)."""
    out = _call(legal_hold.hold_event, req.tenant_id, req.params["event_id"], reason=req.body.reason,
                actor=audit.actor_of(req.principal), now=req.now)
    return m.HoldOut(**out), 200


def release_event(req: Request):
    """``POST /v1/events/{event_id}/release``: removes the event's own hold (409 if released already; the event
    stays held while a camera hold covers it: ``event_hold_ids``)."""
    out = _call(legal_hold.release_event, req.tenant_id, req.params["event_id"],
                actor=audit.actor_of(req.principal), now=req.now)
    return m.HoldOut(**out), 200


def create_camera_hold(req: Request):
    """``POST /v1/cameras/{camera_id}/holds`` ``{"start", "end", "reason"}``: holds the camera's stored events
    overlapping the range and those that arrive later (201; ``events``: how many were stored already)."""
    b: m.CameraHoldIn = req.body
    out = _call(legal_hold.hold_camera, req.tenant_id, req.params["camera_id"], start=b.start, end=b.end,
                reason=b.reason, actor=audit.actor_of(req.principal), now=req.now)
    return m.HoldOut(**out), 201


def list_camera_holds(req: Request):
    """``GET /v1/cameras/{camera_id}/holds``: active and released, newest first."""
    return m.HoldList(holds=[m.HoldOut(**h) for h in legal_hold.list_camera_holds(req.tenant_id,
                                                                                  req.params["camera_id"])]), 200


def release_camera_hold(req: Request):
    """``POST /v1/cameras/{camera_id}/holds/{hold_id}/release``."""
    out = _call(legal_hold.release_camera, req.tenant_id, req.params["camera_id"], req.params["hold_id"],
                actor=audit.actor_of(req.principal), now=req.now)
    return m.HoldOut(**out), 200


# ------------------------------------------------------------------------------------------- evidence export


def export_event(req: Request):
    """``POST /v1/events/{event_id}/export``: a signed evidence package of the event (``vigint.evidence_export``)
    in the bucket, answered with a signed GET URL valid 15 minutes (201). 503 when no signing key is
    configured. Audited (``event.export``)."""
    from vigint import evidence_export

    try:
        out = evidence_export.export_event(req.tenant_id, req.params["event_id"],
                                           actor=audit.actor_of(req.principal), now=req.now)
    except evidence_export.ExportError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return m.ExportOut(**out), 201


def export_key(req: Request):
    """``GET /v1/export-key``: the public key (PEM) that verifies evidence packages."""
    from vigint import evidence_export

    try:
        return m.ExportKeyOut(**evidence_export.public_key()), 200
    except evidence_export.ExportError as exc:
        raise ApiError(exc.status, str(exc)) from None
