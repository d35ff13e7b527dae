"""Camera settings (``/cameras/{camera_id}``): name, enabled, labels, alert labels, minimum score, and the zones
and masks drawn as polygons over the camera's latest snapshot, with each zone's "alert zone" flag.

Watching the page needs ``watch`` (a camera outside the user's sites is the uniform 404 of ``access.camera``);
saving needs ``manage``. The form posts the zones as one JSON field (``zones``: ``[{"name", "points": [[x, y],
...] (0..1 of the frame, x right, y down), "labels", "enter_s", "exit_s", "loiter_s"}]``, what
``static/console/zones.js`` keeps up to date), the masks as another (``masks``: ``[[[x, y], ...]]``, polygons
where the device ignores detections) and the alert zones as a third (``alert_zones``: ``[zone name]``, an
alert then needs an alert label inside one of them); ``masks``/``alert_zones`` ``null`` (or absent) keep the
device's own (its file's, ``vigint_edge/cloud/remote_config.py``) until the user draws or deletes a mask /
changes an alert box. All are validated by the tenant API's ``CameraPatch`` model and saved through
``tenant_api.cameras.patch_camera``, so the device gets them on its next heartbeat exactly as through the API
(``tenant_api.edge_sync.device_config``). A refused form (400) is the page again with the error and what was
typed. Audited ``camera.update`` (the fields changed, the number of zones and of masks).

The snapshot is that of the camera's newest detection event (``tenant_api.events.list_events`` with
``camera_id`` and ``kind``, then ``get_event`` for its short-lived signed URL, ``playback_url_ttl_seconds``).
"""

from __future__ import annotations

import json
import logging
import re

from pydantic import ValidationError

from vigint import audit
from vigint.console import access
from vigint.console.http import ConsoleRequest, HttpError, Response, redirect
from vigint.schema import SLUG_PATTERN
from vigint.tenant_api import cameras as api_cameras
from vigint.tenant_api import events as api_events
from vigint.tenant_api import models as m

log = logging.getLogger(__name__)

PARAMS = {"camera_id": re.compile(SLUG_PATTERN)}
SNAPSHOT_CANDIDATES = 3
_FIELD_NAMES = {"name": "Name", "enabled": "Enabled", "labels": "Labels", "alert_labels": "Alert labels",
                "min_score": "Minimum score", "zones": "Zones", "masks": "Masks", "alert_zones": "Alert zones"}


def latest_snapshot(req: ConsoleRequest, camera_id: str) -> tuple[str | None, object]:
    """``(signed URL, event summary)`` of the newest detection event of the camera that has a snapshot, or
    ``(None, None)``."""
    page = access.api(req, api_events.list_events,
                      query=m.EventsQuery(camera_id=camera_id, kind="detection", limit=SNAPSHOT_CANDIDATES))
    for ev in page.events:
        try:
            detail = access.api(req, api_events.get_event, params={"event_id": ev.event_id})
        except HttpError:
            continue
        if getattr(detail, "snapshot_url", None):
            return detail.snapshot_url, ev
    return None, None


def _labels_text(v) -> str:
    return ", ".join(v) if isinstance(v, list) else ""


def _labels(text: str) -> list[str] | None:
    """``"person, car"`` -> ``["person", "car"]``; empty -> None (the device's defaults)."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    return items or None


def _zone_label(loc: tuple, zones) -> str:
    if len(loc) >= 2 and loc[0] == "zones" and isinstance(loc[1], int):
        z = zones[loc[1]] if isinstance(zones, list) and loc[1] < len(zones) else {}
        name = z.get("name") if isinstance(z, dict) else None
        rest = ".".join(str(p) for p in loc[2:])
        return f"zone {loc[1] + 1}{f' ({name})' if name else ''}{' ' + rest if rest else ''}"
    if len(loc) >= 2 and loc[0] == "masks" and isinstance(loc[1], int):
        rest = f" point {loc[2] + 1}" if len(loc) >= 3 and isinstance(loc[2], int) else ""
        return f"mask {loc[1] + 1}{rest}"
    return _FIELD_NAMES.get(str(loc[0]), str(loc[0])) if loc else "form"


def _problems(exc: ValidationError, zones) -> str:
    return "; ".join(f"{_zone_label(tuple(e['loc']), zones)}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False))


def camera_page(req: ConsoleRequest, *, status: int = 200, error: str = "", form: dict | None = None) -> Response:
    """``GET /cameras/{camera_id}``: the settings form (read-only without ``manage``) and the zone editor over the
    latest snapshot."""
    cam = access.camera(req.user, req.params["camera_id"])
    out = access.api(req, api_cameras.get_camera, params={"camera_id": cam.camera_id})
    snapshot_url, snapshot_event = latest_snapshot(req, cam.camera_id)
    if form is None:
        form = {"name": out.name, "enabled": out.enabled, "labels": _labels_text(out.labels),
                "alert_labels": _labels_text(out.alert_labels),
                "min_score": "" if out.min_score is None else f"{out.min_score:g}",
                "zones": json.dumps([{k: z.get(k) for k in ("name", "points", "labels", "enter_s", "exit_s",
                                                            "loiter_s")} for z in out.zones],
                                    separators=(",", ":")),
                "masks": json.dumps(out.masks, separators=(",", ":")),
                "alert_zones": json.dumps(out.alert_zones, separators=(",", ":"))}
    from vigint.console import sites

    site = next((s for s in sites.list_sites(req.user.tenant_id) if s.site_id == cam.site_id), None)
    return req.page("camera.html", status=status, camera=out, cam=cam, site=site,
                    tz=site.time_zone if site else None, snapshot_url=snapshot_url, snapshot_event=snapshot_event,
                    can_edit=req.user.can("manage"), error=error, saved=req.query.get("saved") == "1" and not error, form=form,
                    max_zones=m.MAX_ZONES, max_masks=m.MAX_MASKS)


def save_camera(req: ConsoleRequest) -> Response:
    """``POST /cameras/{camera_id}`` (``name``, ``enabled``, ``labels``, ``alert_labels`` (comma-separated;
    empty: the device's defaults), ``min_score`` (empty: the device's default), ``zones``, ``masks``,
    ``alert_zones`` (JSON; the last two ``null`` or empty: the device's own, absent: unchanged)): saves through
    ``patch_camera``; 400 with the form again when ``CameraPatch`` or the handler refuses it (e.g. an alert
    zone that is not one of the zones). Audited ``camera.update``."""
    cam = access.camera(req.user, req.params["camera_id"])
    form = {"name": req.field("name").strip(), "enabled": req.field("enabled") == "on",
            "labels": req.field("labels"), "alert_labels": req.field("alert_labels"),
            "min_score": req.field("min_score").strip(), "zones": req.field("zones", "[]")}
    before = access.api(req, api_cameras.get_camera, params={"camera_id": cam.camera_id})
    sent = {k: req.field(k) for k in ("masks", "alert_zones") if req.form.get(k)}
    form.update({k: sent.get(k) or json.dumps(getattr(before, k), separators=(",", ":"))
                 for k in ("masks", "alert_zones")})
    try:
        zones = json.loads(form["zones"] or "[]")
    except ValueError:
        return camera_page(req, status=400, error="Zones: not valid JSON", form=form)
    fields = {"name": form["name"], "enabled": form["enabled"], "labels": _labels(form["labels"]),
              "alert_labels": _labels(form["alert_labels"]), "zones": zones}
    for key, text in sent.items():
        try:
            fields[key] = json.loads(text.strip() or "null")
        except ValueError:
            return camera_page(req, status=400, error=f"{_FIELD_NAMES[key]}: not valid JSON", form=form)
    try:
        fields["min_score"] = float(form["min_score"]) if form["min_score"] else None
    except ValueError:
        return camera_page(req, status=400, error="Minimum score: a number between 0 and 1", form=form)
    try:
        body = m.CameraPatch(**fields)
    except ValidationError as exc:
        return camera_page(req, status=400, error=_problems(exc, zones), form=form)
    after, err = access.attempt(req, api_cameras.patch_camera, params={"camera_id": cam.camera_id}, body=body,
                                act=True)
    if err:
        return camera_page(req, status=err.status, error=err.message, form=form)
    changed = sorted(k for k in body.model_fields_set
                     if getattr(before, k) != getattr(after, k))
    audit.record(req.user.tenant_id, actor=req.user.actor, action="camera.update", target_kind="camera",
                 target_id=cam.camera_id, details={"changed": ",".join(changed), "zones": len(after.zones),
                                                   "masks": None if after.masks is None else len(after.masks)},
                 now=req.now)
    return redirect(f"/cameras/{cam.camera_id}?saved=1")
