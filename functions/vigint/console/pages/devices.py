"""Devices (edge boxes): ``/devices`` and ``/devices/{device_id}`` (admin and owner only: ``manage``).

Everything goes through the tenant API's handlers (``vigint.tenant_api.devices`` and ``.commands``) called as
the user (``access.api(..., act=True)``), so the console keeps the API's invariants (a revoked device takes no
command and gets no new key, an enrollment code is for a device id not in use, command parameters are checked
the same way). Each change is audited with the user as actor: ``device.enroll_code``, ``device.revoke``,
``device.rotate_key``, ``device.command``. Secrets (an enrollment code, a new device secret) are shown once, in
the answer of the POST that made them (``Cache-Control: no-store`` on every console answer), never stored in
clear and never audited.

The device page lists its commands newest first; while one is ``pending`` (queued for the next heartbeat) or
``delivered`` (handed over, no result yet) the list refreshes itself every ``POLL_S`` seconds through htmx
(``GET /devices/{device_id}/commands``, a fragment), and stops once every command has its result.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo

from pydantic import ValidationError

from vigint import audit, pipeline
from vigint.console import access, sites
from vigint.console.http import ConsoleRequest, Response, redirect
from vigint.schema import SLUG_PATTERN
from vigint.tenant_api import commands as api_commands
from vigint.tenant_api import devices as api_devices
from vigint.tenant_api import models as m

log = logging.getLogger(__name__)

PARAMS = {"device_id": re.compile(SLUG_PATTERN)}
POLL_S = 3
COMMANDS_SHOWN = 20
# What each command does on the device (edge_daemon/vigint_edge/daemon.py, module docstring and _run_command).
COMMAND_HELP = {
    "report_status": "Report status: the device answers with its cameras' frame rates, detector times, spool, "
                     "uptime, configuration (camera sources redacted) and software versions.",
    "reload_config": "Reload settings: camera settings from the cloud are applied on every heartbeat anyway; "
                     "the device confirms.",
    "restart": "Restart: the daemon stops and systemd starts it again (detection pauses for a few seconds).",
    "request_clip": "Request a clip: the device cuts the camera's recording between start and end (at most "
                    f"{m.MAX_CLIP_REQUEST_S // 60} minutes, from the last {m.MAX_CLIP_REQUEST_AGE_S // 86400} days) "
                    "and sends it as a recording event.",
}
WAITING = ("pending", "delivered")


def problems(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: message; ...`` (no input values)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False))


def _site_map(tenant_id: str) -> dict[str, sites.Site]:
    return {s.site_id: s for s in sites.list_sites(tenant_id)}


def _cameras_by_device(req: ConsoleRequest) -> dict[str, list[access.Camera]]:
    out: dict[str, list[access.Camera]] = {}
    for cam in access.cameras(req.user):
        out.setdefault(cam.doc.get("device_id") or "", []).append(cam)
    return out


def list_devices(req: ConsoleRequest, *, enroll_error: str = "", enrolled: m.EnrollmentCodeOut | None = None,
                 form: dict | None = None, status: int = 200) -> Response:
    """``GET /devices``: every device with health, last heartbeat, spool, version, cameras and site; the form
    that makes an enrollment code."""
    answer = access.api(req, api_devices.list_devices)
    docs = {s.id: s.to_dict() or {} for s in
            pipeline.tenant_ref(req.user.tenant_id).collection("devices").limit(api_devices.MAX_DEVICES).stream()}
    rows = [(d, docs.get(d.device_id, {}).get("site_id")) for d in answer.devices]
    return req.page("devices.html", status=status, devices=rows, sites=_site_map(req.user.tenant_id),
                    cameras=_cameras_by_device(req), enroll_error=enroll_error, enrolled=enrolled,
                    form=form or {"device_id": "", "name": "", "ttl_minutes": "15"})


def enroll(req: ConsoleRequest) -> Response:
    """``POST /devices/enroll`` (``device_id``, ``name``, ``ttl_minutes``): a one-use enrollment code, shown
    once on the answer. Audited ``device.enroll_code`` (the code is not)."""
    form = {"device_id": req.field("device_id").strip(), "name": req.field("name").strip(),
            "ttl_minutes": req.field("ttl_minutes", "15").strip()}
    try:
        ttl = int(form["ttl_minutes"]) * 60
    except ValueError:
        return list_devices(req, enroll_error="ttl_minutes: a whole number of minutes", form=form, status=400)
    try:
        body = m.EnrollmentCodeIn(device_id=form["device_id"], name=form["name"], ttl_seconds=ttl)
    except ValidationError as exc:
        return list_devices(req, enroll_error=problems(exc).replace("ttl_seconds", "ttl_minutes"), form=form,
                            status=400)
    out, err = access.attempt(req, api_devices.create_enrollment_code, body=body, act=True)
    if err:
        return list_devices(req, enroll_error=err.message, form=form, status=err.status)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="device.enroll_code", target_kind="device",
                 target_id=body.device_id, details={"ttl_seconds": ttl, "name": body.name}, now=req.now)
    return list_devices(req, enrolled=out)


def _commands(req: ConsoleRequest, device_id: str) -> list[m.CommandOut]:
    page = access.api(req, api_commands.list_commands, params={"device_id": device_id},
                      query=m.CommandsQuery(limit=COMMANDS_SHOWN))
    return page.commands


def _latest_versions(cmds: list[m.CommandOut]) -> dict | None:
    """``versions`` of the newest finished ``report_status`` result among ``cmds`` (newest first), if any."""
    for c in cmds:
        if c.type == "report_status" and c.status == "done" and isinstance(c.result, dict):
            versions = c.result.get("versions")
            if isinstance(versions, dict):
                return {str(k): (str(v) if v is not None else None) for k, v in versions.items()}
    return None


def device_page(req: ConsoleRequest, *, status: int = 200, command_error: str = "", command_form: dict | None = None,
                secret: m.DeviceCredentials | None = None, notice: str = "") -> Response:
    """``GET /devices/{device_id}``: the device in detail, its cameras, its commands; revoke, rotate key, send a
    command."""
    device_id = req.params["device_id"]
    dev = access.api(req, api_devices.get_device, params={"device_id": device_id})
    doc = pipeline.tenant_ref(req.user.tenant_id).collection("devices").document(device_id).get().to_dict() or {}
    site_map = _site_map(req.user.tenant_id)
    site = site_map.get(doc.get("site_id") or "")
    cmds = _commands(req, device_id)
    cams = _cameras_by_device(req).get(device_id, [])
    reported_only = sorted(set(dev.cameras) - {c.camera_id for c in cams})
    now_local = req.now.astimezone(_zone(site.time_zone if site else None))
    default_form = {"type": "report_status", "camera_id": cams[0].camera_id if cams else "",
                    "start": (now_local - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
                    "end": (now_local - dt.timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M")}
    return req.page("device.html", status=status, device=dev, device_id=device_id, site_id=doc.get("site_id"), site=site,
                    tz=site.time_zone if site else None, commands=cmds, waiting=any(c.status in WAITING for c in cmds),
                    poll_s=POLL_S, cameras=cams, reported_only=reported_only, versions=_latest_versions(cmds),
                    command_help=COMMAND_HELP, command_error=command_error,
                    command_form=command_form or default_form, secret=secret, notice=notice)


def commands_fragment(req: ConsoleRequest) -> Response:
    """``GET /devices/{device_id}/commands``: the commands list alone (htmx polling target)."""
    device_id = req.params["device_id"]
    access.api(req, api_devices.get_device, params={"device_id": device_id})
    doc = pipeline.tenant_ref(req.user.tenant_id).collection("devices").document(device_id).get().to_dict() or {}
    site = _site_map(req.user.tenant_id).get(doc.get("site_id") or "")
    cmds = _commands(req, device_id)
    return req.page("device_commands.html", device_id=device_id, commands=cmds, tz=site.time_zone if site else None,
                    waiting=any(c.status in WAITING for c in cmds), poll_s=POLL_S)


def revoke(req: ConsoleRequest) -> Response:
    """``POST /devices/{device_id}/revoke``: the device's requests and messages are refused from now on.
    Audited ``device.revoke``."""
    device_id = req.params["device_id"]
    before = access.api(req, api_devices.get_device, params={"device_id": device_id})
    access.api(req, api_devices.revoke_device, params={"device_id": device_id}, act=True)
    if before.status != "revoked":
        audit.record(req.user.tenant_id, actor=req.user.actor, action="device.revoke", target_kind="device",
                     target_id=device_id, now=req.now)
    return redirect(f"/devices/{device_id}")


def rotate_key(req: ConsoleRequest) -> Response:
    """``POST /devices/{device_id}/rotate-key``: a new device secret, shown once on the answer (the old one stops
    working). Audited ``device.rotate_key`` (with the new key version, never the secret)."""
    device_id = req.params["device_id"]
    creds, err = access.attempt(req, api_devices.rotate_key, params={"device_id": device_id}, act=True)
    if err:
        return device_page(req, status=err.status, notice=err.message)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="device.rotate_key", target_kind="device",
                 target_id=device_id, details={"key_version": creds.key_version}, now=req.now)
    return device_page(req, secret=creds)


def _zone(tz: str | None):
    try:
        return zoneinfo.ZoneInfo(tz) if tz else dt.timezone.utc
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.timezone.utc


def _local(value: str, zone) -> dt.datetime | None:
    """A ``datetime-local`` field (``YYYY-MM-DDTHH:MM[:SS]``) in ``zone`` as an aware datetime; None if empty.

    Raises:
        ValueError: not such a time.
    """
    value = value.strip()
    if not value:
        return None
    t = dt.datetime.fromisoformat(value)
    return t.replace(tzinfo=zone) if t.tzinfo is None else t


def send_command(req: ConsoleRequest) -> Response:
    """``POST /devices/{device_id}/commands`` (``type``; for ``request_clip`` also ``camera_id``, ``start``,
    ``end`` as local times of the device's site, UTC without one): queued for the next heartbeat. Audited
    ``device.command``. A refused command shows the form again with the API's message."""
    device_id = req.params["device_id"]
    dev = access.api(req, api_devices.get_device, params={"device_id": device_id})
    doc = pipeline.tenant_ref(req.user.tenant_id).collection("devices").document(device_id).get().to_dict() or {}
    site = _site_map(req.user.tenant_id).get(doc.get("site_id") or "")
    zone = _zone(site.time_zone if site else None)
    form = {k: req.field(k).strip() for k in ("type", "camera_id", "start", "end")}
    fields: dict = {"type": form["type"]}
    if form["type"] == "request_clip":
        try:
            fields.update(camera_id=form["camera_id"] or None, start=_local(form["start"], zone),
                          end=_local(form["end"], zone))
        except ValueError:
            return device_page(req, status=400, command_error="start/end: not a date and time", command_form=form)
    try:
        body = m.CommandIn(**fields)
    except ValidationError as exc:
        return device_page(req, status=400, command_error=problems(exc), command_form=form)
    out, err = access.attempt(req, api_commands.create_command, params={"device_id": dev.device_id}, body=body,
                              act=True)
    if err:
        return device_page(req, status=err.status, command_error=err.message, command_form=form)
    details = {"type": out.type, "command_id": out.command_id}
    details.update({k: str(v) for k, v in out.params.items()})
    audit.record(req.user.tenant_id, actor=req.user.actor, action="device.command", target_kind="device",
                 target_id=device_id, details=details, now=req.now)
    return redirect(f"/devices/{device_id}#commands")


def add_camera(req: ConsoleRequest) -> Response:
    """``POST /devices/{device_id}/cameras`` (``camera_id``): configures in the cloud a camera the device
    reports (``tenant_api.cameras.create_camera``), then opens its settings. Audited ``camera.create``."""
    from vigint.tenant_api import cameras as api_cameras

    device_id = req.params["device_id"]
    access.api(req, api_devices.get_device, params={"device_id": device_id})
    try:
        body = m.CameraIn(camera_id=req.field("camera_id").strip(), device_id=device_id)
    except ValidationError as exc:
        return device_page(req, status=400, notice=problems(exc))
    _, err = access.attempt(req, api_cameras.create_camera, body=body, act=True)
    if err:
        return device_page(req, status=err.status, notice=err.message)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="camera.create", target_kind="camera",
                 target_id=body.camera_id, details={"device_id": device_id}, now=req.now)
    return redirect(f"/cameras/{body.camera_id}")
