"""Single sign-on pages: ``/signin/sso`` (start), ``/signin/oidc/callback`` (finish), ``/settings/sso`` (admin+).

``GET /signin/sso?tenant=`` answers a short page that moves the browser on to the provider (``<meta refresh>``
plus a link) rather than a 303: the sign-in page's form submits to it, and Chromium applies the console's
``form-action 'self'`` to every redirect that follows a form submission, so a redirect to the provider's origin
would be blocked.
"""

from __future__ import annotations

import logging

from vigint.console import oidc
from vigint.console.http import ConsoleRequest, Response, redirect
from vigint.console.pages.auth import start_session

log = logging.getLogger(__name__)


def _refused(req: ConsoleRequest, exc: oidc.SsoError) -> Response:
    log.warning("console: single sign-on refused (%s): %s", exc.status, exc.reason)
    return req.page("sso_error.html", status=exc.status, code=exc.status, message=exc.message)


def start(req: ConsoleRequest) -> Response:
    """``GET /signin/sso?tenant={tenant_id}``: a new flow at the tenant's provider (the browser bound to it by a
    cookie); unknown tenants and tenants without single sign-on get the same 400 page."""
    tenant_id = (req.query.get("tenant") or "").strip().lower()[:63]
    try:
        url, cookie = oidc.begin(tenant_id, ip=req.ip, now=req.now)
    except oidc.SsoError as exc:
        return _refused(req, exc)
    req.set_cookies.append(oidc.cookie_header(cookie, oidc.STATE_TTL_S))
    return req.page("sso_continue.html", url=url)


def callback(req: ConsoleRequest) -> Response:
    """``GET /signin/oidc/callback?code=&state=``: checks the flow and the ID token, maps the e-mail to a user of
    the tenant and starts their session (``method="oidc"``, audited ``user.signin``)."""
    req.set_cookies.append(oidc.cookie_header("", 0))
    try:
        identity = oidc.finish(req.cookies.get(oidc.COOKIE, ""), query=req.query, now=req.now)
        user = oidc.user_for(identity, now=req.now)
    except oidc.SsoError as exc:
        return _refused(req, exc)
    return start_session(req, user, method="oidc")


def settings_form(req: ConsoleRequest, *, status: int = 200, error: str = "", saved: str = "",
                  values: dict | None = None) -> Response:
    """``GET /settings/sso``: the tenant's provider settings (the client secret is never shown)."""
    cfg = oidc.get_config(req.user.tenant_id)
    if values is None:
        values = {"issuer": cfg.issuer if cfg else "", "client_id": cfg.client_id if cfg else "",
                  "allowed_domains": ", ".join(cfg.allowed_domains) if cfg else "",
                  "auto_create": cfg.auto_create if cfg else False,
                  "auto_create_role": cfg.auto_create_role if cfg else "viewer"}
    return req.page("sso_settings.html", status=status, cfg=cfg, values=values, error=error, saved=saved,
                    callback_url=oidc.redirect_uri(), roles=oidc.AUTO_CREATE_ROLES,
                    tenant_id=req.user.tenant_id)


def settings_save(req: ConsoleRequest) -> Response:
    """``POST /settings/sso``: saves (``op=save``) or removes (``op=remove``) the settings; audited
    ``settings.sso``. A refused field answers 400 with the form as it was typed (the secret not echoed)."""
    if req.field("op") == "remove":
        oidc.remove_config(req.user.tenant_id, actor=req.user.actor, now=req.now)
        return redirect("/settings/sso?saved=removed")
    values = {"issuer": req.field("issuer")[:400], "client_id": req.field("client_id")[:300],
              "allowed_domains": req.field("allowed_domains")[:2000],
              "auto_create": req.field("auto_create") == "on",
              "auto_create_role": req.field("auto_create_role", "viewer")}
    try:
        oidc.put_config(req.user.tenant_id, client_secret=req.field("client_secret"), actor=req.user.actor,
                        now=req.now, **values)
    except oidc.ConfigError as exc:
        return settings_form(req, status=400, error=str(exc), values=values)
    return redirect("/settings/sso?saved=saved")


def settings_page(req: ConsoleRequest) -> Response:
    saved = req.query.get("saved", "")
    return settings_form(req, saved=saved if saved in ("saved", "removed") else "")
