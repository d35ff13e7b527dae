"""Sites admin (``/settings/sites``, ``manage``): create and rename sites with their IANA time zone, put a
device in a site (``tenants/{t}/devices/{d}.site_id``) and, optionally, a camera in another site than its
device's (``tenants/{t}/cameras/{c}.site_id``; empty: the device's). Audited ``site.create``, ``site.update``,
``device.site`` and ``camera.site``.

A device or camera moved to a site changes at once what site-limited users see (``access.cameras`` reads
``camera_site`` on every request). These are single-document writes made by a person, far below Firestore's
sustained one write per second per document.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo

from google.api_core import exceptions as gexc

from vigint import audit, pipeline
from vigint.console import access, sites
from vigint.console.http import ConsoleRequest, HttpError, Response, not_found, redirect

PARAMS = {"site_id": sites.SITE_ID}
MAX_DEVICES = 1000


@functools.lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """Every IANA time zone of this system's tz database, sorted (``zoneinfo.available_timezones()`` without the
    legacy ``posix/``/``right/`` copies)."""
    return tuple(sorted(z for z in zoneinfo.available_timezones() if not z.startswith(("posix", "right"))))


def slug_of(name: str) -> str:
    """A site id made from a name: ``"Dépôt Nord"`` -> ``"depot-nord"`` (at most 63 characters)."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-")[:63].strip("-")


def _devices(tenant_id: str) -> list[tuple[str, dict]]:
    col = pipeline.tenant_ref(tenant_id).collection("devices")
    return sorted(((s.id, s.to_dict() or {}) for s in col.limit(MAX_DEVICES).stream()), key=lambda p: p[0])


def sites_page(req: ConsoleRequest, *, status: int = 200, error: str = "", error_form: str = "",
               form: dict | None = None) -> Response:
    """``GET /settings/sites``: the sites, their devices and cameras, and the forms that change them."""
    tenant_id = req.user.tenant_id
    site_list = sites.list_sites(tenant_id)
    known = {s.site_id: s for s in site_list}
    devices = _devices(tenant_id)
    cams = access.cameras(req.user)
    per_site: dict = {}
    for device_id, doc in devices:
        per_site.setdefault(doc.get("site_id") or None, {"devices": [], "cameras": []})["devices"].append(device_id)
    for cam in cams:
        per_site.setdefault(cam.site_id, {"devices": [], "cameras": []})["cameras"].append(cam)
    return req.page("sites.html", status=status, sites=site_list, known=known, devices=devices, cameras=cams,
                    per_site=per_site, time_zones=time_zones(), error=error, error_form=error_form,
                    form=form or {"name": "", "site_id": "", "time_zone": ""})


def create_site(req: ConsoleRequest) -> Response:
    """``POST /settings/sites`` (``name``, ``site_id`` (optional: made from the name), ``time_zone``): a new
    site (an id in use is refused). Audited ``site.create``."""
    form = {"name": req.field("name").strip(), "site_id": req.field("site_id").strip(),
            "time_zone": req.field("time_zone").strip()}
    site_id = form["site_id"] or slug_of(form["name"])
    ref = sites.sites_col(req.user.tenant_id).document(site_id) if sites.SITE_ID.match(site_id) else None
    if ref is not None and ref.get().exists:
        return sites_page(req, status=409, error=f"site_id: {site_id} is already a site", error_form="create",
                          form=form)
    try:
        site = sites.put_site(req.user.tenant_id, site_id, name=form["name"], time_zone=form["time_zone"] or None,
                              now=req.now)
    except sites.SiteError as exc:
        return sites_page(req, status=400, error=str(exc), error_form="create", form=form)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="site.create", target_kind="site",
                 target_id=site.site_id, details={"name": site.name, "time_zone": site.time_zone}, now=req.now)
    return redirect("/settings/sites")


def update_site(req: ConsoleRequest) -> Response:
    """``POST /settings/sites/{site_id}`` (``name``, ``time_zone``): renames a site or changes its time zone.
    Audited ``site.update``."""
    site_id = req.params["site_id"]
    snap = sites.sites_col(req.user.tenant_id).document(site_id).get()
    if not snap.exists:
        raise not_found()
    before = snap.to_dict() or {}
    try:
        site = sites.put_site(req.user.tenant_id, site_id, name=req.field("name"),
                              time_zone=req.field("time_zone").strip() or None, now=req.now)
    except sites.SiteError as exc:
        return sites_page(req, status=400, error=str(exc), error_form=f"site-{site_id}")
    audit.record(req.user.tenant_id, actor=req.user.actor, action="site.update", target_kind="site",
                 target_id=site_id, details={"name": site.name, "time_zone": site.time_zone,
                                             "name_before": before.get("name"),
                                             "time_zone_before": before.get("time_zone")}, now=req.now)
    return redirect("/settings/sites")


def _site_or_none(req: ConsoleRequest, site_id: str) -> str | None:
    """``site_id`` when it is one of the tenant's sites, None when empty.

    Raises:
        HttpError: 400 for an unknown site.
    """
    if not site_id:
        return None
    if not sites.SITE_ID.match(site_id) or not sites.sites_col(req.user.tenant_id).document(site_id).get().exists:
        raise HttpError(400, "site_id: not a site of this tenant")
    return site_id


def assign_device(req: ConsoleRequest) -> Response:
    """``POST /settings/sites/assign/device`` (``device_id``, ``site_id``; empty: no site): the device and the cameras
    that do not name their own site move to the site. Audited ``device.site``."""
    device_id = req.field("device_id").strip()
    try:
        site_id = _site_or_none(req, req.field("site_id").strip())
    except HttpError as exc:
        return sites_page(req, status=exc.status, error=exc.message, error_form="device")
    ref = pipeline.tenant_ref(req.user.tenant_id).collection("devices").document(device_id or "-")
    snap = ref.get() if re.match(r"^[a-z0-9][a-z0-9-]{1,62}$", device_id) else None
    if snap is None or not snap.exists:
        return sites_page(req, status=400, error="device_id: not a device of this tenant", error_form="device")
    before = (snap.to_dict() or {}).get("site_id")
    try:
        ref.update({"site_id": site_id})
    except gexc.NotFound:
        raise not_found() from None
    audit.record(req.user.tenant_id, actor=req.user.actor, action="device.site", target_kind="device",
                 target_id=device_id, details={"site_id": site_id, "site_id_before": before}, now=req.now)
    return redirect("/settings/sites")


def assign_camera(req: ConsoleRequest) -> Response:
    """``POST /settings/sites/assign/camera`` (``camera_id``, ``site_id``; empty: its device's site): a camera in
    another site than its device's. Audited ``camera.site``."""
    camera_id = req.field("camera_id").strip()
    try:
        site_id = _site_or_none(req, req.field("site_id").strip())
    except HttpError as exc:
        return sites_page(req, status=exc.status, error=exc.message, error_form="camera")
    try:
        cam = access.camera(req.user, camera_id) if re.match(r"^[a-z0-9][a-z0-9-]{1,62}$", camera_id) else None
    except HttpError:
        cam = None
    if cam is None:
        return sites_page(req, status=400, error="camera_id: not a camera of this tenant", error_form="camera")
    pipeline.tenant_ref(req.user.tenant_id).collection("cameras").document(camera_id).update({"site_id": site_id})
    audit.record(req.user.tenant_id, actor=req.user.actor, action="camera.site", target_kind="camera",
                 target_id=camera_id, details={"site_id": site_id, "site_id_before": cam.doc.get("site_id")},
                 now=req.now)
    return redirect("/settings/sites")
