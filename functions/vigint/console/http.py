"""Request plumbing of the console: routes, the session, CSRF, security headers, static files, errors.

Order of checks for one request: ``/assets/{name}`` is served from an allow-list; an unknown path is 404; a
known path with another method 405; a page that needs a session without one redirects to ``/signin`` (an htmx
request gets 401 with ``HX-Redirect``); a state-changing method (anything but GET/HEAD) must carry the session's
CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``) and must not come from another site
(``Sec-Fetch-Site``/``Origin``), else 403; an action the role does not allow is 403; an id of another tenant, of
a site the user may not see or that does not exist is the same 404 page. Every answer carries a strict CSP (no
inline script or style, ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: same-origin`` (with ``no-referrer`` Chromium sends ``Origin: null`` on form posts)
and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from google.api_core import exceptions as gexc

from vigint import config
from vigint.console import sessions, users
from vigint.console.render import render
from vigint.tenant_api.http import literal_segments, match_template

log = logging.getLogger(__name__)

Response = tuple[Any, int, dict]
MAX_FORM_BYTES = 64 * 1024
PRE_SESSION_COOKIE = "vigint_csrf"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_MAX_AGE_S = 365 * 24 * 3600
# Name under /assets/ -> (file under vigint/static/, Content-Type). Nothing else is served. (Not /static/: the
# Flask app functions-framework builds answers that prefix itself.)
STATIC_FILES = {
    "htmx.min.js": ("console/vendor/htmx.min.js", "text/javascript; charset=utf-8"),
    "pico.min.css": ("console/vendor/pico.min.css", "text/css; charset=utf-8"),
    "console.js": ("console/console.js", "text/javascript; charset=utf-8"),
    "console.css": ("console/console.css", "text/css; charset=utf-8"),
    "zones.js": ("console/zones.js", "text/javascript; charset=utf-8"),
    "event.js": ("console/event.js", "text/javascript; charset=utf-8"),
    "hls.light.min.js": ("hls.light.min.js", "text/javascript; charset=utf-8"),
    "player.js": ("player.js", "text/javascript; charset=utf-8"),
    "player.css": ("player.css", "text/css; charset=utf-8"),
}


class HttpError(Exception):
    """An error page with an HTTP status (403, 404, ...); ``message`` is shown (escaped)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def not_found() -> HttpError:
    """The one 404 every missing id, other tenant's id and hidden site's id gets."""
    return HttpError(404, "There is nothing here, or you may not see it.")


@dataclasses.dataclass
class ConsoleRequest:
    """What a page handler gets.

    Attributes:
        method, path: of the request.
        params: path parameters.
        query: query string (first value of each name).
        form: form fields (every value of each name), for POST.
        user: the signed-in user (None on public pages).
        session: their session.
        now: request time (UTC).
        ip, user_agent: of the client.
        htmx: whether htmx sent it (``HX-Request``): answer a fragment.
        csrf_token: the token forms must carry (the session's, or the pre-session cookie's).
        set_cookies: ``Set-Cookie`` values to add to the answer.
        cookies: the request's cookies (name -> value, the first of each name).
    """

    method: str
    path: str
    params: dict[str, str]
    query: Mapping[str, str]
    form: Mapping[str, list[str]]
    user: users.ConsoleUser | None
    session: sessions.Session | None
    now: dt.datetime
    ip: str | None
    user_agent: str | None
    htmx: bool
    csrf_token: str
    set_cookies: list[str] = dataclasses.field(default_factory=list)
    cookies: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def field(self, name: str, default: str = "") -> str:
        """The first value of form field ``name``."""
        values = self.form.get(name) or []
        return values[0] if values else default

    def page(self, template: str, status: int = 200, **context) -> Response:
        """Renders ``templates/console/{template}`` with the user, the CSRF token and ``context``."""
        body = render(template, user=self.user, csrf_token=self.csrf_token, path=self.path, now=self.now,
                      htmx=self.htmx, **context)
        return body, status, {"Content-Type": "text/html; charset=utf-8"}


def redirect(location: str, status: int = 303) -> Response:
    return "", status, {"Location": location}


@dataclasses.dataclass(frozen=True)
class Page:
    """One route.

    Attributes:
        method: HTTP method.
        path: template such as ``/events/{event_id}``.
        handler: ``f(ConsoleRequest) -> Response``.
        action: what the user must be allowed (``users.ACTIONS``), or None for a public page (no session).
        params: path parameter -> compiled pattern its value must match (else 404).
    """

    method: str
    path: str
    handler: Callable[[ConsoleRequest], Response]
    action: str | None = "watch"
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def match(self, path: str) -> dict[str, str] | None:
        return match_template(self.path, path)

    @property
    def literal_segments(self) -> int:
        return literal_segments(self.path)


def _origin() -> str:
    base = urlsplit(config.settings().console_base_url or "")
    return f"{base.scheme}://{base.netloc}" if base.netloc else ""


def _bucket_origin() -> str:
    origin = urlsplit(config.settings().storage_endpoint)
    return f"{origin.scheme}://{origin.netloc}"


def security_headers() -> dict[str, str]:
    """Headers of every console answer (the CSP allows our own scripts and styles and the bucket's media)."""
    bucket = _bucket_origin()
    csp = (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {bucket} data:; "
           f"media-src 'self' {bucket} blob:; connect-src 'self' {bucket}; worker-src blob:; font-src 'self'; "
           "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
            "Cross-Origin-Opener-Policy": "same-origin"}


@functools.lru_cache(maxsize=len(STATIC_FILES))
def _static_bytes(name: str) -> bytes:
    return (STATIC_DIR / STATIC_FILES[name][0]).read_bytes()


def static_url(name: str) -> str:
    """``/assets/{name}?v={first 16 hex of its SHA-256}`` (cache-busting; files are cached a year)."""
    return f"/assets/{name}?v={hashlib.sha256(_static_bytes(name)).hexdigest()[:16]}"


def _static(name: str) -> Response:
    if name not in STATIC_FILES:
        return "not found\n", 404, {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
    return _static_bytes(name), 200, {"Content-Type": STATIC_FILES[name][1], "X-Content-Type-Options": "nosniff",
                                      "Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}, immutable"}


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value
    return out


def _same_site(headers: Mapping[str, str]) -> bool:
    """False when the browser says the request comes from another site (``Sec-Fetch-Site``), or its ``Origin``
    is not the console's own."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return False
    origin, own = headers.get("Origin"), _origin()
    if origin and own and origin != own:
        return False
    return True


def _error_page(req: ConsoleRequest | None, status: int, message: str) -> Response:
    body = render("error.html", user=req.user if req else None, csrf_token=req.csrf_token if req else "",
                  path=req.path if req else "/", now=req.now if req else None, htmx=False, status=status,
                  message=message)
    return body, status, {"Content-Type": "text/html; charset=utf-8"}


def dispatch(pages: list[Page], *, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str],
             form: Mapping[str, list[str]], remote_addr: str | None, now: dt.datetime | None = None) -> Response:
    """Serves one console request against ``pages`` (see the module docstring for the order of checks)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    path = path.rstrip("/") or "/"
    if path.startswith("/assets/") and path.count("/") == 2:
        if method not in ("GET", "HEAD"):
            return "method not allowed\n", 405, {"Allow": "GET, HEAD"}
        return _static(path.split("/")[2])
    body, status, extra = _serve(pages, method=method, path=path, headers=headers, query=query, form=form,
                                 remote_addr=remote_addr, now=now)
    out = security_headers()
    out.update(extra)
    return body, status, out


def _serve(pages, *, method, path, headers, query, form, remote_addr, now) -> Response:
    candidates = [(p, m) for p in pages if (m := p.match(path)) is not None]
    if not candidates:
        return _error_page(None, 404, not_found().message)
    same = [(p, m) for p, m in candidates if p.method == method or (method == "HEAD" and p.method == "GET")]
    if not same:
        return "method not allowed\n", 405, {"Allow": ", ".join(sorted({p.method for p, _ in candidates}))}
    page, params = max(same, key=lambda pm: pm[0].literal_segments)
    cookies = _cookies(headers)
    htmx = headers.get("HX-Request") == "true"
    session = user = None
    set_cookies: list[str] = []
    try:
        session = sessions.lookup(cookies.get(sessions.cookie_name()), now=now)
        if session is not None:
            found = users.get_user(session.tenant_id, session.user_id)
            user = dataclasses.replace(found, session_id=session.key) if found else None
            if user is None:
                session = None
        if session is not None:
            csrf = session.csrf_token
        else:  # a pre-session token for the sign-in forms (double submit: cookie and field must agree)
            csrf = cookies.get(PRE_SESSION_COOKIE) or ""
            if not (16 <= len(csrf) <= 100) or not csrf.replace("-", "").replace("_", "").isalnum():
                csrf = secrets.token_urlsafe(24)
                set_cookies.append(f"{PRE_SESSION_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"
                                   + ("; Secure" if sessions.secure() else ""))
        req = ConsoleRequest(method=method, path=path, params=params, query=query, form=form, user=user,
                             session=session, now=now, ip=remote_addr, user_agent=headers.get("User-Agent"),
                             htmx=htmx, csrf_token=csrf, set_cookies=set_cookies, cookies=cookies)
        if page.action is not None and user is None:
            if htmx:
                return "", 401, {"HX-Redirect": "/signin"}
            return redirect("/signin")
        if method not in ("GET", "HEAD"):
            presented = req.field("csrf_token") or headers.get("X-CSRF-Token") or ""
            if not _same_site(headers) or not presented or not hmac.compare_digest(presented, csrf):
                log.warning("console: CSRF check failed on %s %s (same site %s, token %s)", method, page.path,
                            _same_site(headers), "missing" if not presented else "differs")
                return _error_page(req, 403, "This form has expired or did not come from the console. "
                                             "Reload the page and try again.")
        if page.action is not None and not user.can(page.action):
            return _error_page(req, 403, "Your role does not allow this.")
        for name, pattern in page.params.items():
            if not pattern.match(params.get(name, "")):
                raise not_found()
        body, status, extra = page.handler(req)
    except HttpError as exc:
        body, status, extra = _error_page(req if "req" in locals() else None, exc.status, exc.message)
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted) as exc:
        log.warning("console: %s %s: backend unavailable: %s", method, page.path, type(exc).__name__)
        body, status, extra = "Temporarily unavailable, try again in a moment.\n", 503, {"Retry-After": "5"}
    extra = dict(extra)
    if set_cookies:
        extra["Set-Cookie"] = set_cookies if len(set_cookies) > 1 else set_cookies[0]
    return body, status, extra
