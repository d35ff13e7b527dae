"""The sites overview (``/``): each site's cameras as tiles, grouped by site ("No site" last).

A tile shows the camera's latest snapshot (of its newest event: ``camera_id ==``, ``start_time`` DESC, limit 1,
the tenant API's ``(camera_id, start_time DESC)`` index; a signed URL of at most 60 s, as ``GET /v1/events/{id}``
makes them), its health from the device's last heartbeat (``edge_api`` stores ``last_heartbeat_at`` and
``last_heartbeat`` = ``{"version", "cameras": {camera_id: {..., "health": {"state", "connected",
"last_frame_age_s", "alerts": {label: count}}}}, "spool": {"items", "live", "bulk", "bytes", ...}}``), and its
unacknowledged alerts (two count aggregations: alerted, and alerted and acknowledged; equality filters only,
served by Firestore's single-field indexes). A device is offline once its last heartbeat is older than
``pipeline.heartbeat_stale_after_s`` (the device's interval x ``stale_heartbeat_intervals``), as the
retention job's ``device_offline`` check counts it. The per-camera reads run in a small thread pool.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from google.cloud import firestore as fs

from vigint import pipeline
from vigint.console import access, sites
from vigint.console.http import ConsoleRequest, Response
from vigint.console.pages import events

WORKERS = 8


@dataclasses.dataclass
class Tile:
    """One camera's tile.

    Attributes:
        cam: the camera (``access.Camera``).
        name: its display name.
        device: ``"online"``, ``"offline"``, ``"never_seen"`` or ``"revoked"``.
        camera_state: the heartbeat's ``health.state`` of the camera (``ok``, ``offline``, ``black``,
            ``starting``) or None.
        tamper_alerts: camera_tampered alerts the device counted since it started (0: none).
        spool_items: items waiting in the device's spool (None: not reported).
        heartbeat_at: the device's last heartbeat (UTC) or None.
        latest: the newest event's summary (or None), ``thumb`` its snapshot URL.
        unacknowledged: alerts of the camera not acknowledged.
    """

    cam: access.Camera
    name: str
    device: str
    camera_state: str | None
    tamper_alerts: int
    spool_items: int | None
    heartbeat_at: dt.datetime | None
    latest: object | None
    thumb: str | None
    unacknowledged: int


def device_health(device: dict, now: dt.datetime) -> str:
    """``revoked``, ``never_seen``, ``online`` or ``offline`` (silent for ``stale_heartbeat_intervals`` x
    ``heartbeat_interval_seconds``, the device's own interval first)."""
    if device.get("status") and device.get("status") != "active":
        return "revoked"
    last = pipeline.as_utc(device.get("last_heartbeat_at"))
    if last is None:
        return "never_seen"
    return "offline" if (now - last).total_seconds() >= pipeline.heartbeat_stale_after_s(device) else "online"


def _count(q) -> int:
    return int(q.count(alias="n").get()[0][0].value)


def _tile(req: ConsoleRequest, cam: access.Camera) -> Tile:
    col = pipeline.tenant_ref(req.user.tenant_id).collection("events")
    by_cam = col.where(filter=fs.FieldFilter("camera_id", "==", cam.camera_id))
    newest = list(by_cam.order_by("start_time", direction=fs.Query.DESCENDING).limit(1).stream())
    alerted = by_cam.where(filter=fs.FieldFilter("alert.alerted", "==", True))
    unacked = max(0, _count(alerted) - _count(alerted.where(filter=fs.FieldFilter("ack.acknowledged", "==", True))))
    beat = cam.device.get("last_heartbeat") if isinstance(cam.device.get("last_heartbeat"), dict) else {}
    cam_state = (beat.get("cameras") or {}).get(cam.camera_id) if isinstance(beat.get("cameras"), dict) else None
    health = cam_state.get("health") if isinstance(cam_state, dict) and isinstance(cam_state.get("health"), dict) \
        else {}
    alerts = health.get("alerts") if isinstance(health.get("alerts"), dict) else {}
    spool = beat.get("spool") if isinstance(beat.get("spool"), dict) else {}
    tamper = alerts.get("camera_tampered")
    latest = thumb = None
    if newest:
        latest = events.events_api.summary(newest[0])
        thumb = events.thumb_url(req.user.tenant_id, newest[0].to_dict() or {}, newest[0].id, req.now)
    return Tile(cam=cam, name=str(cam.doc.get("name") or cam.camera_id),
                device=device_health(cam.device, req.now) if cam.device else "never_seen",
                camera_state=str(health["state"]) if health.get("state") else None,
                tamper_alerts=tamper if isinstance(tamper, int) and not isinstance(tamper, bool) else 0,
                spool_items=spool.get("items") if isinstance(spool.get("items"), int) else None,
                heartbeat_at=pipeline.as_utc(cam.device.get("last_heartbeat_at")), latest=latest, thumb=thumb,
                unacknowledged=unacked)


def overview(req: ConsoleRequest) -> Response:
    """``GET /``: the user's sites (those they may see), each with its cameras' tiles."""
    cams = access.cameras(req.user)
    known = {s.site_id: s for s in sites.list_sites(req.user.tenant_id)}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        tiles = list(pool.map(lambda c: _tile(req, c), cams))
    groups: dict = {}
    for tile in tiles:
        groups.setdefault(tile.cam.site_id, []).append(tile)
    for g in groups.values():
        g.sort(key=lambda t: (t.name.lower(), t.cam.camera_id))
    zone = events.tenant_zone(req.user.tenant_id)
    order = sorted(groups, key=lambda s: (s is None, (known[s].name if s in known else s or "").lower()))
    shown = []
    for sid in order:
        site = (known.get(sid) or sites.Site(sid, sid, None)) if sid else None
        shown.append((site, (site.time_zone if site and site.time_zone else zone), groups[sid]))
    return req.page("overview.html", groups=shown)
