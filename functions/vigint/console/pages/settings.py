"""Tenant settings (admin and owner: ``manage``): the hub ``/settings``, alert settings ``/settings/alerts``
(recipients, threshold, cooldown, quiet hours, link lifetime, the webhook) and API keys ``/settings/api-keys``.

Alert settings are changed through the tenant API's ``tenant.patch_tenant`` (its pydantic models validate; a
refused field shows the form again with the message next to it). The webhook (``alert.webhook {url, secret}``)
is not in the tenant API; it is written here, and its secret is shown once, when it is set, and never again
(pages say only whether one is set). Every change is an audit entry: ``settings.alerts`` with the names of the
changed fields (never a secret value), ``apikey.create`` and ``apikey.revoke``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import zoneinfo
from urllib.parse import urlsplit

from google.cloud import firestore as fs
from pydantic import ValidationError

from vigint import audit, pipeline
from vigint.console import access
from vigint.console.http import ConsoleRequest, HttpError, Response, redirect
from vigint.tenant_api import models as m
from vigint.tenant_api import tenant as tenant_api

log = logging.getLogger(__name__)

KEY_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_WEBHOOK_URL = 2000
WEBHOOK_SECRET_MIN = 16
THRESHOLDS = [(0, "0 — every event"), (1, "1 — low and above"), (2, "2 — medium and above"), (3, "3 — high only")]


def hub(req: ConsoleRequest) -> Response:
    """``GET /settings``: links to each settings page."""
    return req.page("settings.html")


# ---------------------------------------------------------------------------------------------- alert settings


def _time_zones() -> list[str]:
    return sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")


def _webhook_state(tenant_id: str) -> dict:
    """``{"url": str | None, "secret_set": bool}`` of the tenant's webhook (the secret itself never leaves)."""
    doc = pipeline.tenant_ref(tenant_id).get().to_dict() or {}
    hook = (doc.get("alert") or {}).get("webhook") or {}
    return {"url": hook.get("url") or None, "secret_set": bool(hook.get("secret"))}


def _alert_page(req: ConsoleRequest, *, form: dict | None = None, errors: dict | None = None, status: int = 200,
                saved: bool = False, webhook_secret: str | None = None, webhook_errors: dict | None = None,
                webhook_form: dict | None = None) -> Response:
    current: m.TenantOut = access.api(req, tenant_api.get_tenant)
    if form is None:
        qh = current.quiet_hours
        form = {"recipients": "\n".join(current.alert.recipients), "threshold": str(current.alert.threshold),
                "cooldown_seconds": str(current.alert.cooldown_seconds),
                "link_ttl_hours": _hours(current.alert.link_ttl_seconds),
                "quiet_start": qh.start if qh else "", "quiet_end": qh.end if qh else "",
                "quiet_timezone": qh.timezone if qh else (current.timezone or "")}
    return req.page("settings_alerts.html", status=status, form=form, errors=errors or {}, saved=saved,
                    thresholds=THRESHOLDS, time_zones=_time_zones(), webhook=_webhook_state(req.user.tenant_id),
                    webhook_secret=webhook_secret, webhook_errors=webhook_errors or {},
                    webhook_form=webhook_form or {"url": ""})


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return str(int(hours)) if hours == int(hours) else f"{hours:.2f}".rstrip("0")


def alerts_form(req: ConsoleRequest) -> Response:
    """``GET /settings/alerts``."""
    return _alert_page(req, saved=req.query.get("saved") == "1")


# form field -> (model path, message shown when the model refuses it)
_ALERT_FIELDS = {
    "recipients": ("alert.recipients", f"one e-mail address per line, at most {m.MAX_RECIPIENTS}"),
    "threshold": ("alert.threshold", "a threat level from 0 to 3"),
    "cooldown_seconds": ("alert.cooldown_seconds", "whole seconds, 0 to 604800 (7 days)"),
    "link_ttl_hours": ("alert.link_ttl_seconds", "hours, more than 0 and at most 720 (30 days)"),
    "quiet_start": ("quiet_hours.start", "a local time HH:MM"),
    "quiet_end": ("quiet_hours.end", "a local time HH:MM"),
    "quiet_timezone": ("quiet_hours.timezone", "an IANA time zone such as Europe/Paris"),
}


def _int(value: str, field: str, errors: dict) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        errors[field] = _ALERT_FIELDS[field][1]
        return None


def _field_of(loc: tuple) -> str:
    path = ".".join(str(p) for p in loc if not isinstance(p, int))
    for name, (model_path, _msg) in _ALERT_FIELDS.items():
        if path == model_path or path.startswith(model_path + "."):
            return name
    if path.startswith("quiet_hours"):
        return "quiet_start"
    return "recipients"


def alerts_save(req: ConsoleRequest) -> Response:
    """``POST /settings/alerts``: validates with ``TenantPatch`` and saves through ``tenant.patch_tenant``."""
    form = {name: req.field(name).strip() for name in _ALERT_FIELDS}
    errors: dict[str, str] = {}
    recipients = [r.strip() for r in re.split(r"[\s,;]+", form["recipients"]) if r.strip()]
    alert: dict = {"recipients": recipients}
    for name, key in (("threshold", "threshold"), ("cooldown_seconds", "cooldown_seconds")):
        value = _int(form[name], name, errors)
        if value is not None:
            alert[key] = value
    try:
        hours = float(form["link_ttl_hours"])
        if not 0 < hours <= 720:
            raise ValueError
        alert["link_ttl_seconds"] = max(1, round(hours * 3600))
    except ValueError:
        errors["link_ttl_hours"] = _ALERT_FIELDS["link_ttl_hours"][1]
    quiet = [form["quiet_start"], form["quiet_end"]]
    if any(quiet) and not all(quiet):
        errors["quiet_start" if not form["quiet_start"] else "quiet_end"] = "give both start and end, or neither"
    body: dict = {"alert": alert, "quiet_hours": None}
    if all(quiet):
        body["quiet_hours"] = {"start": form["quiet_start"], "end": form["quiet_end"],
                               "timezone": form["quiet_timezone"] or "UTC"}
    patch = None
    if not errors:
        try:
            patch = m.TenantPatch.model_validate(body)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                loc = tuple(err["loc"])
                name = _field_of(loc)
                if name == "recipients" and len(loc) > 2 and isinstance(loc[2], int):
                    message = f"not an e-mail address: {recipients[loc[2]]}"
                elif loc == ("quiet_hours",):
                    message = err["msg"].removeprefix("Value error, ")
                else:
                    message = _ALERT_FIELDS[name][1]
                errors.setdefault(name, message)
    if errors:
        return _alert_page(req, form=form, errors=errors, status=400)
    before: m.TenantOut = access.api(req, tenant_api.get_tenant)
    after: m.TenantOut = access.api(req, tenant_api.patch_tenant, body=patch, act=True)
    changed = [f"alert.{k}" for k in ("recipients", "threshold", "cooldown_seconds", "link_ttl_seconds")
               if getattr(before.alert, k) != getattr(after.alert, k)]
    if before.quiet_hours != after.quiet_hours:
        changed.append("quiet_hours")
    if changed:
        audit.record(req.user.tenant_id, actor=req.user.actor, action="settings.alerts", target_kind="tenant",
                     target_id=req.user.tenant_id, details={"changed": ",".join(changed)}, now=req.now)
    return redirect("/settings/alerts?saved=1")


def _webhook_url_error(url: str) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None. HTTPS only, except to a loopback address (local
    receivers); no user name or password in it (they would be shown on the page)."""
    if not url or len(url) > MAX_WEBHOOK_URL:
        return f"an https:// URL of at most {MAX_WEBHOOK_URL} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "not a URL"
    if not host or parts.username or parts.password or any(c.isspace() for c in url):
        return "an https:// URL with a host and no user name or password"
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        return "must start with https:// (http:// only to this machine)"
    return None


def webhook_save(req: ConsoleRequest) -> Response:
    """``POST /settings/alerts/webhook``: ``op=set`` (URL and an optional secret; without one a random
    secret is made) sets or replaces the webhook and shows its secret this once; ``op=remove`` removes it."""
    op = req.field("op")
    ref = pipeline.tenant_ref(req.user.tenant_id)
    had = _webhook_state(req.user.tenant_id)
    if op == "remove":
        if had["url"] or had["secret_set"]:
            ref.update({"alert.webhook": fs.DELETE_FIELD})
            audit.record(req.user.tenant_id, actor=req.user.actor, action="settings.alerts", target_kind="tenant",
                         target_id=req.user.tenant_id, details={"changed": "alert.webhook", "webhook": "removed"},
                         now=req.now)
        return redirect("/settings/alerts?saved=1")
    if op != "set":
        raise HttpError(400, "Unknown webhook action.")
    url = req.field("url").strip()
    given = req.field("secret")
    errors = {}
    if (problem := _webhook_url_error(url)) is not None:
        errors["url"] = problem
    if given and not (WEBHOOK_SECRET_MIN <= len(given) <= 200 and given.isprintable() and given.strip() == given):
        errors["secret"] = f"{WEBHOOK_SECRET_MIN} to 200 printable characters, or empty to have one made"
    if errors:
        return _alert_page(req, status=400, webhook_errors=errors, webhook_form={"url": url})
    secret = given or secrets.token_urlsafe(32)
    ref.update({"alert.webhook": {"url": url, "secret": secret}})
    audit.record(req.user.tenant_id, actor=req.user.actor, action="settings.alerts", target_kind="tenant",
                 target_id=req.user.tenant_id,
                 details={"changed": "alert.webhook", "webhook": "replaced" if had["url"] else "set"}, now=req.now)
    log.info("console: tenant %s webhook %s by user %s", req.user.tenant_id,
             "replaced" if had["url"] else "set", req.user.user_id)
    # shown this once (the answer is Cache-Control: no-store); generated secrets only: a typed one is known
    return _alert_page(req, saved=True, webhook_secret=secret if not given else None)


# ------------------------------------------------------------------------------------------------ API keys


def _keys_page(req: ConsoleRequest, *, status: int = 200, created=None, errors: dict | None = None,
               form: dict | None = None, revoked: bool = False) -> Response:
    listing: m.ApiKeyList = access.api(req, tenant_api.list_api_keys, act=True)
    keys = sorted(listing.api_keys, key=lambda k: (k.revoked, -(k.created_at.timestamp() if k.created_at else 0)))
    return req.page("apikeys.html", status=status, keys=keys, created=created, errors=errors or {},
                    form=form or {"name": "", "role": "viewer"}, revoked=revoked)


def api_keys(req: ConsoleRequest) -> Response:
    """``GET /settings/api-keys``: the tenant's keys (no secrets) and the create form."""
    return _keys_page(req, revoked=req.query.get("revoked") == "1")


def api_key_create(req: ConsoleRequest) -> Response:
    """``POST /settings/api-keys``: creates a key through ``tenant.create_api_key``; the key is on this answer
    only."""
    form = {"name": req.field("name").strip(), "role": req.field("role")}
    try:
        body = m.ApiKeyIn.model_validate(form)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        field = str(err["loc"][0]) if err["loc"] else "name"
        msg = "1 to 100 printable characters" if field == "name" else "admin or viewer"
        return _keys_page(req, status=400, errors={field: msg}, form=form)
    try:
        created: m.ApiKeyCreated = access.api(req, tenant_api.create_api_key, body=body, act=True)
    except HttpError as exc:
        if exc.status != 400:
            raise
        return _keys_page(req, status=400, errors={"name": exc.message}, form=form)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="apikey.create", target_kind="api_key",
                 target_id=created.key_id, details={"name": created.name, "role": created.role}, now=req.now)
    return _keys_page(req, status=201, created=created)


def api_key_revoke(req: ConsoleRequest) -> Response:
    """``POST /settings/api-keys/{key_id}/revoke``: another tenant's or a missing key is the same 404."""
    key_id = req.params["key_id"]
    revoked: m.ApiKeyOut = access.api(req, tenant_api.revoke_api_key, params={"key_id": key_id}, act=True)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="apikey.revoke", target_kind="api_key",
                 target_id=key_id, details={"name": revoked.name}, now=req.now)
    return redirect("/settings/api-keys?revoked=1")
