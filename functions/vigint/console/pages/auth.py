"""Sign-in by e-mailed link, and sign-out (``/signin``, ``/signin/link``, ``/signout``)."""

from __future__ import annotations

import logging

from vigint import audit, pipeline
from vigint.console import sessions, signin
from vigint.console.http import ConsoleRequest, Response, redirect

log = logging.getLogger(__name__)


def signin_form(req: ConsoleRequest) -> Response:
    """``GET /signin``: the address form (a signed-in user goes to the overview)."""
    if req.user is not None:
        return redirect("/")
    return req.page("signin.html", sent=False, email="", sso=True)


def signin_request(req: ConsoleRequest) -> Response:
    """``POST /signin``: e-mails links; the same page whatever the address."""
    email = req.field("email")[:320]
    signin.request_link(email, ip=req.ip, now=req.now)
    body, status, headers = req.page("signin.html", sent=True, email=email, sso=False)
    return body, status, headers


def link_confirm(req: ConsoleRequest) -> Response:
    """``GET /signin/link?t=``: who the link signs in as, and a button (nothing is used yet)."""
    token = req.query.get("t", "")
    pending = signin.peek(token, now=req.now)
    tenant_name = ""
    if pending:
        tenant_name = (pipeline.tenant_ref(pending.tenant_id).get().to_dict() or {}).get("name") or pending.tenant_id
    return req.page("signin_confirm.html", status=200 if pending else 410, pending=pending, token=token,
                    tenant_name=tenant_name)


def link_use(req: ConsoleRequest) -> Response:
    """``POST /signin/link``: uses the link, ends any session the browser had, starts a new one."""
    used = signin.consume(req.field("t"), now=req.now)
    if used is None:
        return req.page("signin_confirm.html", status=410, pending=None, token="", tenant_name="")
    from vigint.console import users

    user = users.get_user(used.tenant_id, used.user_id)
    if user is None:  # disabled since the link was sent
        return req.page("signin_confirm.html", status=410, pending=None, token="", tenant_name="")
    return start_session(req, user, method="link")


def start_session(req: ConsoleRequest, user, *, method: str) -> Response:
    """A fresh session for ``user`` (the old one, if any, revoked), the user marked active, the sign-in
    audited; redirects to the overview."""
    from vigint.console import users

    if req.session is not None:
        sessions.revoke(req.session.key, now=req.now)
    session_id, _session = sessions.create(user.tenant_id, user.user_id, method=method, ip=req.ip,
                                           user_agent=req.user_agent, now=req.now)
    users.users_col(user.tenant_id).document(user.user_id).update({"status": "active", "last_signin_at": req.now})
    audit.record(user.tenant_id, actor=user.actor, action="user.signin", target_kind="user",
                 target_id=user.user_id, details={"method": method, "ip": (req.ip or "")[:64]}, now=req.now)
    log.info("console: user %s of tenant %s signed in (%s)", user.user_id, user.tenant_id, method)
    req.set_cookies.append(sessions.cookie_header(session_id, max_age_s=_max_age()))
    return redirect("/")


def _max_age() -> int:
    from vigint import config

    return config.settings().console_session_max_s


def signout(req: ConsoleRequest) -> Response:
    """``POST /signout``: revokes the session and clears the cookie."""
    if req.session is not None:
        sessions.revoke(req.session.key, now=req.now)
        audit.record(req.user.tenant_id, actor=req.user.actor, action="user.signout", target_kind="user",
                     target_id=req.user.user_id, now=req.now)
    req.set_cookies.append(sessions.cookie_header("", max_age_s=0))
    return redirect("/signin")
