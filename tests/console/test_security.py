"""Cross-cutting security of the console, on the real entry point (functions-framework's Flask app, or
``vigint.console.handle`` where a test pins the time) and the emulators: one-time links (reuse, also concurrent;
expiry), session fixation, idle and absolute session expiry, revocation, cookie flags, CSRF and framing on every
route of ``vigint.console.routes.PAGES`` (enumerated, so routes added later are covered), sign-in rate limits and
their indistinguishable answers, roles on every route, and no 5xx for garbage ids.

Times are pinned through the ``now`` argument of ``vigint.console.handle`` and of the modules; nothing sleeps."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from werkzeug.datastructures import Headers

from tests.console.conftest import csrf_of, sign_in, signin_link_path

COOKIE = "vigint_session"
CSRF_REFUSED = "did not come from the console"
ROLE_REFUSED = "Your role does not allow this."
# Path-parameter values a route must answer with a 4xx (or a page), never a 5xx.
GARBAGE_IDS = ["__x__", "..", "%2e%2e", "x" * 500, "a b", "<script>", "'\"", "\u00e9\u4e2d", "-", "0" * 64,
               "%00", "\\", "nuc-1;drop"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pages():
    from vigint.console.routes import PAGES

    return PAGES


def _fill(path: str, value: str = "__x__") -> str:
    """``path`` with every ``{param}`` replaced by ``value``."""
    return re.sub(r"\{[^}]+\}", lambda _m: value, path)


def _session_cookie(client) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie in the client"
    return cookie.value


def _set_cookies(resp) -> list[str]:
    return resp.headers.getlist("Set-Cookie")


def _call(method: str, path: str, *, session: str | None = None, now: dt.datetime | None = None,
          form: dict | None = None, query: dict | None = None, headers: dict | None = None,
          ip: str = "203.0.113.7"):
    """``vigint.console.handle`` with a pinned ``now``: ``(body, status, headers)``."""
    from vigint import console

    h = Headers(headers or {})
    if session is not None:
        h["Cookie"] = f"{COOKIE}={session}"
    return console.handle(method=method, path=path, headers=h, query=query or {},
                          form={k: [v] for k, v in (form or {}).items()}, remote_addr=ip, now=now)


@pytest.fixture
def settings_env(monkeypatch):
    """``set(**{VAR: value})``: changes console settings for this test (the cached settings are re-read)."""
    from vigint import config

    def set_(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        config.settings.cache_clear()

    yield set_
    config.settings.cache_clear()


# --- one-time sign-in links ---------------------------------------------------------------------------------


def test_a_link_works_once_and_a_second_use_is_refused(client, tenant):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="once@example.com", role="operator")
    path = signin_link_path(tenant.tenant_id, "once@example.com")
    token = path.split("t=", 1)[1]
    page = client.get(path)
    first = client.post("/signin/link", data={"t": token, "csrf_token": csrf_of(page.text)})
    assert first.status_code == 303 and first.headers["Location"] == "/"
    other = type(client)(client.application)  # another browser with the same link
    page2 = other.get("/signin")
    again = other.post("/signin/link", data={"t": token, "csrf_token": csrf_of(page2.text)})
    assert again.status_code == 410 and "does not work" in again.text
    assert other.get_cookie(COOKIE) is None and other.get("/").status_code == 303


def test_two_concurrent_uses_of_one_link_one_wins(client, tenant):
    """Two browsers press the button at the same moment: the transaction lets exactly one sign in."""
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="race@example.com", role="viewer")
    token = signin_link_path(tenant.tenant_id, "race@example.com").split("t=", 1)[1]
    browsers = [type(client)(client.application) for _ in range(2)]
    tokens = [csrf_of(b.get("/signin").text) for b in browsers]
    barrier, results = threading.Barrier(2), [None, None]

    def press(i):
        barrier.wait()
        results[i] = browsers[i].post("/signin/link", data={"t": token, "csrf_token": tokens[i]}).status_code

    threads = [threading.Thread(target=press, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [303, 410], results
    signed_in = [b.get("/").status_code for b in browsers]
    assert sorted(signed_in) == [200, 303]

    # The module itself, without HTTP: of two concurrent consumes of a fresh link, one gets the user.
    from vigint.console import signin

    token2 = signin_link_path(tenant.tenant_id, "race@example.com").split("t=", 1)[1]
    got, now = [None, None], _utcnow()
    barrier2 = threading.Barrier(2)

    def consume(i):
        barrier2.wait()
        got[i] = signin.consume(token2, now=now)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(g is not None for g in got) == 1, got


def test_a_link_expires_after_15_minutes(tenant, fenv):
    from vigint.console import signin, users

    user = users.put_user(tenant.tenant_id, email="late@example.com", role="admin")
    made = _utcnow()
    url = signin.make_link(user, ip=None, now=made)
    token = url.split("t=", 1)[1]
    assert signin.LINK_TTL_S == 15 * 60
    before, after = made + dt.timedelta(seconds=signin.LINK_TTL_S - 1), made + dt.timedelta(seconds=signin.LINK_TTL_S)
    _, status, _ = _call("GET", "/signin/link", query={"t": token}, now=before)
    assert status == 200
    _, status, _ = _call("GET", "/signin/link", query={"t": token}, now=after)
    assert status == 410
    # The button pressed just too late: refused, and no session cookie.
    body, status, headers = _call("GET", "/signin", now=after)
    pre = re.search(r"vigint_csrf=([^;]+)", headers["Set-Cookie"]).group(1)
    _, status, headers = _call("POST", "/signin/link", form={"t": token, "csrf_token": pre}, now=after,
                               headers={"Cookie": f"vigint_csrf={pre}"})
    assert status == 410 and COOKIE not in str(headers.get("Set-Cookie", ""))
    # ... while in time it works (the refusal above used nothing).
    _, status, headers = _call("POST", "/signin/link", form={"t": token, "csrf_token": pre}, now=before,
                               headers={"Cookie": f"vigint_csrf={pre}"})
    assert status == 303 and str(headers["Set-Cookie"]).startswith(f"{COOKIE}=")


# --- sessions -------------------------------------------------------------------------------------------------


def test_session_fixation_a_cookie_from_before_sign_in_is_never_the_session(client, tenant):
    """An attacker who planted a session cookie (or saw the pre-sign-in cookies) gains nothing: sign-in makes a
    new random id, the planted value stays refused."""
    from vigint.console import users

    planted = "attacker-chosen-value-0123456789abcdefABCDEF"
    client.set_cookie(COOKIE, planted)
    assert client.get("/").status_code == 303  # an unknown id is no session
    users.put_user(tenant.tenant_id, email="fix@example.com", role="owner")
    path = signin_link_path(tenant.tenant_id, "fix@example.com")
    page = client.get(path)
    pre_csrf = client.get_cookie("vigint_csrf").value
    used = client.post("/signin/link", data={"t": path.split("t=", 1)[1], "csrf_token": csrf_of(page.text)})
    assert used.status_code == 303
    new_id = _session_cookie(client)
    assert new_id not in (planted, pre_csrf) and len(new_id) >= 40
    home = client.get("/")
    assert home.status_code == 200 and csrf_of(home.text) != pre_csrf  # the session's own CSRF token
    _, status, _ = _call("GET", "/", session=planted)
    assert status == 303

    # Signing in again in the same browser replaces the session: the old id is refused from then on.
    path = signin_link_path(tenant.tenant_id, "fix@example.com")
    page = client.get(path)
    again = client.post("/signin/link", data={"t": path.split("t=", 1)[1], "csrf_token": csrf_of(page.text)})
    assert again.status_code == 303 and _session_cookie(client) != new_id
    assert _call("GET", "/", session=new_id)[1] == 303
    assert client.get("/").status_code == 200


def test_session_idle_and_absolute_expiry(tenant, settings_env):
    from vigint.console import sessions, users

    settings_env(VIGINT_CONSOLE_SESSION_IDLE_S="600", VIGINT_CONSOLE_SESSION_MAX_S="1500")
    users.put_user(tenant.tenant_id, email="idle@example.com", role="viewer")
    uid = users.user_id_of("idle@example.com")
    t0 = _utcnow()

    idle_id, _ = sessions.create(tenant.tenant_id, uid, method="link", ip=None, user_agent=None, now=t0)
    assert _call("GET", "/", session=idle_id, now=t0 + dt.timedelta(seconds=599))[1] == 200
    # 599 s later it was touched (last_seen moves on at most every TOUCH_EVERY_S): idle counts from there.
    assert _call("GET", "/", session=idle_id, now=t0 + dt.timedelta(seconds=599 + 600))[1] == 303

    live_id, _ = sessions.create(tenant.tenant_id, uid, method="link", ip=None, user_agent=None, now=t0)
    for s in (400, 800, 1200, 1499):  # used all along, never idle for 600 s
        assert _call("GET", "/", session=live_id, now=t0 + dt.timedelta(seconds=s))[1] == 200, s
    body, status, headers = _call("GET", "/", session=live_id, now=t0 + dt.timedelta(seconds=1500))
    assert status == 303 and headers["Location"] == "/signin"  # the absolute end, however active
    assert _call("GET", "/", session=live_id, now=t0 + dt.timedelta(seconds=1501),
                 headers={"HX-Request": "true"})[1] == 401


def test_a_revoked_session_is_refused(client, tenant):
    from vigint.console import sessions

    home = sign_in(client, tenant.tenant_id, "rev@example.com", role="admin")
    sid = _session_cookie(client)
    assert _call("GET", "/", session=sid)[1] == 200
    sessions.revoke(sessions.key_of(sid), now=_utcnow())
    assert client.get("/").status_code == 303
    assert _call("POST", "/signout", session=sid, form={"csrf_token": csrf_of(home)})[1] == 303  # to /signin
    # Signed out in one browser: a copy of the cookie elsewhere is refused too.
    other = type(client)(client.application)
    sign_in(other, tenant.tenant_id, "rev2@example.com")
    copied = _session_cookie(other)
    out = other.post("/signout", data={"csrf_token": csrf_of(other.get("/").text)})
    assert out.status_code == 303 and any(c.startswith(f"{COOKIE}=;") for c in _set_cookies(out))
    assert _call("GET", "/", session=copied)[1] == 303


def test_a_disabled_user_loses_their_session(client, tenant):
    from vigint.console import users

    sign_in(client, tenant.tenant_id, "gone@example.com", role="operator")
    users.users_col(tenant.tenant_id).document(users.user_id_of("gone@example.com")).update({"status": "disabled"})
    assert client.get("/").status_code == 303


def test_cookie_flags_local_http(client, tenant):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="flags@example.com", role="viewer")
    path = signin_link_path(tenant.tenant_id, "flags@example.com")
    page = client.get(path)
    used = client.post("/signin/link", data={"t": path.split("t=", 1)[1], "csrf_token": csrf_of(page.text)})
    cookie = next(c for c in _set_cookies(used) if c.startswith(f"{COOKIE}="))
    attrs = [a.strip() for a in cookie.split(";")]
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/" in attrs
    assert "Secure" not in attrs and not any(a.lower().startswith("domain") for a in attrs)


def test_cookie_flags_over_https_are_secure_and_host_prefixed(tenant, settings_env):
    from vigint.console import sessions, signin, users

    settings_env(VIGINT_CONSOLE_BASE_URL="https://console.example.test")
    assert sessions.cookie_name() == "__Host-vigint_session"
    user = users.put_user(tenant.tenant_id, email="tls@example.com", role="owner")
    url = signin.make_link(user, ip=None, now=_utcnow())
    assert url.startswith("https://console.example.test/signin/link?t=")
    token = url.split("t=", 1)[1]
    body, status, headers = _call("GET", "/signin/link", query={"t": token})
    pre_cookie = headers["Set-Cookie"]
    assert status == 200 and "Secure" in pre_cookie and "HttpOnly" in pre_cookie
    pre = re.search(r"vigint_csrf=([^;]+)", pre_cookie).group(1)
    same = {"Cookie": f"vigint_csrf={pre}", "Origin": "https://console.example.test", "Sec-Fetch-Site": "same-origin"}
    _, status, headers = _call("POST", "/signin/link", form={"t": token, "csrf_token": pre}, headers=same)
    assert status == 303
    cookie = headers["Set-Cookie"]
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0].startswith("__Host-vigint_session=")
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= set(attrs)
    assert not any(a.lower().startswith("domain") for a in attrs)  # __Host- forbids Domain
    sid = attrs[0].split("=", 1)[1]
    h = Headers({"Cookie": f"__Host-vigint_session={sid}"})
    from vigint import console

    assert console.handle(method="GET", path="/", headers=h, query={}, form={}, remote_addr=None)[1] == 200
    # The plain-http name is not accepted in its place.
    assert _call("GET", "/", session=sid)[1] == 303
    # On https, a form from the console's own origin passes, from the plain-http origin it does not.
    home, _, _ = console.handle(method="GET", path="/", headers=h, query={}, form={}, remote_addr=None)
    token = csrf_of(home)
    for origin, expect in (("http://console.example.test", 403), ("https://console.example.test", 303)):
        hh = Headers({"Cookie": f"__Host-vigint_session={sid}", "Origin": origin})
        got = console.handle(method="POST", path="/signout", headers=hh, query={},
                             form={"csrf_token": [token]}, remote_addr=None)[1]
        assert got == expect, origin


# --- CSRF on every state-changing route -----------------------------------------------------------------------


def _post_routes():
    return [p for p in _pages() if p.method not in ("GET", "HEAD")]


def test_every_post_route_refuses_a_request_without_the_sessions_own_csrf_token(client, tenant, fenv):
    """Missing token, another session's token, ``Sec-Fetch-Site: cross-site`` or ``same-site``, a foreign
    ``Origin``: 403 with the CSRF page, for every POST route, while the session stays valid."""
    posts = _post_routes()
    assert {"/signin", "/signin/link", "/signout"} <= {p.path for p in posts}
    home = sign_in(client, tenant.tenant_id, "csrf-owner@example.com", role="owner")
    own = csrf_of(home)
    other = type(client)(client.application)
    foreign = csrf_of(sign_in(other, tenant.tenant_id, "csrf-other@example.com", role="owner"))
    assert foreign != own
    for page in posts:
        path = _fill(page.path)
        cases = {
            "no token": ({}, {}),
            "empty token": ({"csrf_token": ""}, {}),
            "another session's token": ({"csrf_token": foreign}, {}),
            "another session's token in the header": ({}, {"X-CSRF-Token": foreign}),
            "cross-site": ({"csrf_token": own}, {"Sec-Fetch-Site": "cross-site"}),
            "same-site, other origin": ({"csrf_token": own}, {"Sec-Fetch-Site": "same-site"}),
            "foreign Origin": ({"csrf_token": own}, {"Origin": "https://evil.example"}),
            "null Origin": ({"csrf_token": own}, {"Origin": "null"}),
        }
        for name, (data, headers) in cases.items():
            resp = client.post(path, data=data, headers=headers)
            assert resp.status_code == 403, f"{page.method} {page.path}: {name} got {resp.status_code}"
            assert CSRF_REFUSED in resp.text, f"{page.path}: {name}: refused for another reason"
    assert client.get("/").status_code == 200, "refused requests did not end the session"
    # The control: the same request with the session's token (field or htmx header) from its own origin passes.
    ok = client.post("/signout", headers={"X-CSRF-Token": own, "Sec-Fetch-Site": "same-origin",
                                          "Origin": fenv.env["VIGINT_CONSOLE_BASE_URL"]})
    assert ok.status_code == 303 and client.get("/").status_code == 303


def test_pre_session_forms_need_the_matching_double_submit_token(client, tenant, smtp_sink):
    """The sign-in forms (no session yet): the field must equal this browser's ``vigint_csrf`` cookie."""
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="pre@example.com", role="viewer")
    smtp_sink.clear()
    mine = csrf_of(client.get("/signin").text)
    theirs = csrf_of(type(client)(client.application).get("/signin").text)
    assert client.post("/signin", data={"email": "pre@example.com", "csrf_token": theirs}).status_code == 403
    assert client.post("/signin", data={"email": "pre@example.com"}).status_code == 403
    assert smtp_sink.messages() == []
    assert client.post("/signin", data={"email": "pre@example.com", "csrf_token": mine}).status_code == 200
    assert len(smtp_sink.messages()) == 1


# --- framing and headers on every page --------------------------------------------------------------------------


def _assert_unframeable(resp, what: str) -> None:
    csp = resp.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, f"{what}: CSP {csp!r}"
    assert resp.headers.get("X-Frame-Options") == "DENY", what
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", what
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what


def test_every_get_route_refuses_to_be_framed_signed_in_or_not(client, tenant):
    gets = [p for p in _pages() if p.method == "GET"]
    assert gets
    for page in gets:  # signed out: the page, a redirect to /signin or an error page
        resp = client.get(_fill(page.path))
        _assert_unframeable(resp, f"signed out GET {page.path} ({resp.status_code})")
    sign_in(client, tenant.tenant_id, "frame@example.com", role="owner")
    for page in gets:  # signed in, with fake ids (a 404 page carries them as well)
        resp = client.get(_fill(page.path))
        _assert_unframeable(resp, f"GET {page.path} ({resp.status_code})")
        assert resp.headers.get("Cache-Control") == "no-store", page.path
    for path in ("/no-such-page", "/events/__x__/__y__/__z__"):
        resp = client.get(path)
        assert resp.status_code == 404
        _assert_unframeable(resp, path)


# --- sign-in rate limits, and answers that say nothing --------------------------------------------------------


def _answer(resp, email: str) -> tuple:
    """The sign-in answer without what differs by design (the echoed address, the CSRF token, cookies)."""
    body = resp.get_data()
    body = body.replace(email.encode(), b"ADDRESS")
    body = re.sub(rb'(name="csrf-token" content=")[^"]*', rb"\1", body)
    body = re.sub(rb'(name="csrf_token" value=")[^"]*', rb"\1", body)
    headers = sorted((k, v) for k, v in resp.headers.items() if k.lower() not in ("set-cookie", "content-length"))
    return resp.status_code, headers, body


def test_sixth_request_for_one_address_sends_nothing_and_answers_the_same(client, tenant, smtp_sink):
    from vigint.console import signin, users

    users.put_user(tenant.tenant_id, email="limit@example.com", role="viewer")
    smtp_sink.clear()
    token = csrf_of(client.get("/signin").text)
    ip = {"X-Forwarded-For": "198.51.100.1"}
    answers = []
    for i in range(signin.PER_ADDRESS):
        resp = client.post("/signin", data={"email": "limit@example.com", "csrf_token": token}, headers=ip)
        answers.append(_answer(resp, "limit@example.com"))
        assert len(smtp_sink.messages()) == i + 1
    # The 6th within the window (also with another spelling of the address): no e-mail, the same answer.
    limited = client.post("/signin", data={"email": " LIMIT@example.com", "csrf_token": token}, headers=ip)
    assert len(smtp_sink.messages()) == signin.PER_ADDRESS
    unknown = client.post("/signin", data={"email": "nobody-x@example.com", "csrf_token": token}, headers=ip)
    assert len(smtp_sink.messages()) == signin.PER_ADDRESS
    assert _answer(limited, " LIMIT@example.com") == answers[0] == answers[-1]
    assert _answer(unknown, "nobody-x@example.com") == answers[0]
    assert b"ADDRESS" in answers[0][2]  # the comparison saw the page itself

    # The window is fixed: a new one (pinned time) sends again.
    later = _utcnow() + dt.timedelta(seconds=signin.WINDOW_S + 1)
    sent = []
    signin.request_link("limit@example.com", ip="198.51.100.1", now=later, send=sent.append)
    assert len(sent) == 1


def test_per_ip_limit_sends_nothing_and_answers_the_same(client, tenant, smtp_sink):
    from vigint.console import signin, users

    users.put_user(tenant.tenant_id, email="known@example.com", role="viewer")
    smtp_sink.clear()
    token = csrf_of(client.get("/signin").text)
    noisy = {"X-Forwarded-For": "192.0.2.66"}
    first = client.post("/signin", data={"email": "known@example.com", "csrf_token": token}, headers=noisy)
    assert len(smtp_sink.messages()) == 1
    for i in range(signin.PER_IP - 1):  # the rest of this client's window, on other addresses
        client.post("/signin", data={"email": f"probe{i}@example.com", "csrf_token": token}, headers=noisy)
    limited = client.post("/signin", data={"email": "known@example.com", "csrf_token": token}, headers=noisy)
    assert len(smtp_sink.messages()) == 1, "the client's limit was reached: nothing sent"
    assert _answer(limited, "known@example.com") == _answer(first, "known@example.com")
    # Another client is not limited by it.
    client.post("/signin", data={"email": "known@example.com", "csrf_token": token},
                headers={"X-Forwarded-For": "192.0.2.67"})
    assert len(smtp_sink.messages()) == 2


# --- roles on every route ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role,site_ids", [("viewer", None), ("operator", None), ("admin", None),
                                           ("admin", ["site-a"])])
def test_every_route_beyond_the_role_is_403(client, tenant, role, site_ids):
    """Every route (POST with a valid CSRF token, and GET) whose action the role (or a site-limited user) lacks
    answers the role's 403; a viewer is refused every state-changing route but sign-out."""
    from vigint.console.users import ConsoleUser

    home = sign_in(client, tenant.tenant_id, f"{role}-{len(site_ids or [])}@example.com", role=role,
                   site_ids=site_ids)
    token = csrf_of(home)
    probe = ConsoleUser(tenant.tenant_id, "u", "u@example.com", "u", role, tuple(site_ids) if site_ids else None)
    beyond = [p for p in _pages() if p.action is not None and not probe.can(p.action)]
    if role == "viewer":
        posts = [p for p in _post_routes() if p.action is not None]
        assert {p.path for p in posts if p not in beyond} <= {"/signout"}, "a viewer may only sign out"
    for page in beyond:
        path = _fill(page.path)
        if page.method == "GET":
            resp = client.get(path)
        else:
            resp = client.post(path, data={"csrf_token": token})
        assert resp.status_code == 403 and ROLE_REFUSED in resp.text, f"{role}: {page.method} {page.path}"
    assert client.get("/").status_code == 200


def test_the_role_check_guards_routes_the_parts_add(tenant, fenv):
    """The dispatcher's role check on a route of each action (the real ``dispatch`` with a route table of this
    test, so it holds before the parts' routes exist): refused before the handler runs, and with a valid CSRF
    token (the order of checks: session, CSRF, role)."""
    from vigint.console import http, sessions, users

    ran = []

    def handler(req):
        ran.append(req.path)
        return "done", 200, {}

    table = [http.Page("POST", f"/probe/{a}", handler, action=a) for a in users.ACTIONS]
    table += [http.Page("GET", f"/probe/{a}", handler, action=a) for a in users.ACTIONS]
    now = _utcnow()
    for role in users.ROLES:
        user = users.put_user(tenant.tenant_id, email=f"probe-{role}@example.com", role=role)
        sid, session = sessions.create(tenant.tenant_id, user.user_id, method="link", ip=None, user_agent=None,
                                       now=now)
        for page in table:
            ran.clear()
            body, status, _ = http.dispatch(table, method=page.method, path=page.path,
                                            headers=Headers({"Cookie": f"{COOKIE}={sid}"}), query={},
                                            form={"csrf_token": [session.csrf_token]}, remote_addr=None, now=now)
            allowed = user.can(page.action)
            assert (status, bool(ran)) == ((200, True) if allowed else (403, False)), (role, page.method, page.path)
            if not allowed:
                assert ROLE_REFUSED in body


def test_roles_allow_what_they_say():
    """The role table the routes rely on (issue 11)."""
    from vigint.console.users import ACTIONS, ConsoleUser

    def can(role, sites=None):
        return {a for a in ACTIONS if ConsoleUser("t", "u", "e", "n", role, sites).can(a)}

    assert can("viewer") == {"watch"}
    assert can("operator") == {"watch", "acknowledge", "share", "request_clip"}
    assert can("admin") == can("operator") | {"manage"}
    assert can("owner") == set(ACTIONS)
    assert can("owner", ("site-a",)) == can("operator")  # site-limited: nothing tenant-wide


# --- garbage ids never make a 5xx -------------------------------------------------------------------------------


def test_no_route_answers_5xx_to_garbage_ids_or_queries(client, tenant):
    home = sign_in(client, tenant.tenant_id, "garbage@example.com", role="owner")
    token = csrf_of(home)
    seen = 0
    for page in _pages():
        if page.path == "/signout":
            continue  # would end the session the loop needs; it takes no id
        shapes = GARBAGE_IDS if "{" in page.path else [None]
        for value in shapes:
            path = _fill(page.path, value) if value is not None else page.path
            query = {"t": "x" * 500, "tenant": "../..", "cursor": "%00", "page": "-1", "since": "yesterday"}
            if page.method == "GET":
                resp = client.get(path, query_string=query)
            else:
                resp = client.post(path, data={"csrf_token": token, "t": "__x__", "email": "x" * 400})
            assert resp.status_code < 500, f"{page.method} {page.path} with {value!r}: {resp.status_code}"
            seen += 1
    assert seen >= len(_pages()) - 1
    for value in GARBAGE_IDS:  # paths no route has, and the asset allow-list
        assert client.get(f"/{value}/{value}").status_code < 500
        assert client.get(f"/assets/{value}").status_code == 404
    assert client.get("/").status_code == 200
