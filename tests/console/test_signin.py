"""Sign-in by e-mailed link on the real console entry point and the emulators: the link from the real SMTP
server's mailbox, single use, expiry, no account enumeration, rate limits, session cookie flags, fixation,
sign-out, CSRF on every form, security headers."""

from __future__ import annotations

import datetime as dt

from tests.console.conftest import LINK, csrf_of, sign_in, signin_link_path


def _cookie(resp, name="vigint_session"):
    for value in resp.headers.getlist("Set-Cookie"):
        if value.startswith(name + "="):
            return value
    return None


def test_signed_out_pages_redirect_to_signin(client):
    resp = client.get("/")
    assert resp.status_code == 303 and resp.headers["Location"] == "/signin"
    assert client.get("/", headers={"HX-Request": "true"}).headers.get("HX-Redirect") == "/signin"


def test_link_from_the_mailbox_signs_in(client, tenant, smtp_sink):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="Lead@Example.com", role="owner")
    smtp_sink.clear()
    form = client.get("/signin")
    resp = client.post("/signin", data={"email": "lead@example.com", "csrf_token": csrf_of(form.text)})
    assert resp.status_code == 200 and "sign-in link is on its way" in resp.text
    msgs = smtp_sink.messages()
    assert len(msgs) == 1 and msgs[0]["To"] == "lead@example.com"
    url = LINK.search(msgs[0].get_content()).group(1)
    path = url[url.index("/signin/link"):]
    confirm = client.get(path)
    assert confirm.status_code == 200 and "lead@example.com" in confirm.text
    # opening the link uses nothing: a mail scanner's GET leaves it valid
    assert client.get(path).status_code == 200
    used = client.post("/signin/link", data={"t": path.split("t=")[1], "csrf_token": csrf_of(confirm.text)})
    assert used.status_code == 303 and used.headers["Location"] == "/"
    cookie = _cookie(used)
    assert cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    home = client.get("/")
    assert home.status_code == 200 and "Sites" in home.text
    # single use: the same link now fails, also in another browser
    assert client.get(path).status_code == 410


def test_unknown_address_gets_the_same_answer(client, tenant, smtp_sink):
    smtp_sink.clear()
    form = client.get("/signin")
    known = client.post("/signin", data={"email": "nobody@example.com", "csrf_token": csrf_of(form.text)})
    assert known.status_code == 200 and "sign-in link is on its way" in known.text
    assert smtp_sink.messages() == []


def test_expired_link_fails(client, tenant, monkeypatch):
    from vigint.console import signin, users

    users.put_user(tenant.tenant_id, email="late@example.com", role="viewer")
    path = signin_link_path(tenant.tenant_id, "late@example.com")
    token = path.split("t=")[1]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=signin.LINK_TTL_S + 1)
    assert signin.peek(token, now=later) is None and signin.consume(token, now=later) is None
    assert signin.peek(token, now=later - dt.timedelta(seconds=2)) is not None


def test_form_without_csrf_is_refused(client, tenant):
    sign_in(client, tenant.tenant_id, "a@example.com")
    resp = client.post("/signout", data={})
    assert resp.status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    home = client.get("/")
    resp = client.post("/signout", data={"csrf_token": csrf_of(home.text)},
                       headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 403


def test_signout_ends_the_session(client, tenant):
    home = sign_in(client, tenant.tenant_id, "b@example.com")
    resp = client.post("/signout", data={"csrf_token": csrf_of(home)})
    assert resp.status_code == 303
    assert client.get("/").status_code == 303


def test_security_headers(client, tenant):
    home = sign_in(client, tenant.tenant_id, "c@example.com")
    resp = client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in home and " style=" not in home


def test_pages_load_only_our_own_assets(client):
    """Every script and style a page names is served by the console with its type (no CDN); other names 404."""
    import re

    page = client.get("/signin")
    refs = re.findall(r'(?:href|src)="(/assets/[^"]+)"', page.text)
    assert len(refs) == 4 and not re.search(r'(?:href|src)="https?:', page.text)
    for ref in refs:
        resp = client.get(ref)
        assert resp.status_code == 200 and resp.headers["Content-Type"].split(";")[0] in (
            "text/css", "text/javascript") and "immutable" in resp.headers["Cache-Control"]
    assert client.get("/assets/../main.py").status_code == 404
    assert client.get("/assets/player.js.map").status_code == 404
