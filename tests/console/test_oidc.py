"""Single sign-on (OpenID Connect) against the real ``oidc-provider`` (tests/oidc): the console's ``/signin/sso``
and ``/signin/oidc/callback`` in-process (the real ``console`` entry point), the provider's own login and consent
forms driven with ``requests``; every refusal leaves the browser without a session."""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.console.conftest import csrf_of, sign_in
from tests.oidc.provider import oidc_provider  # noqa: F401  (fixture)

REFRESH = re.compile(r'<meta http-equiv="refresh" content="0;url=([^"]+)">')


def configure(tenant_id, provider, *, client=0, domains="example.com", auto_create=False, role="viewer"):
    from vigint.console import oidc

    c = provider.clients[client]
    return oidc.put_config(tenant_id, issuer=provider.issuer, client_id=c["client_id"],
                           client_secret=c["client_secret"], allowed_domains=domains, auto_create=auto_create,
                           auto_create_role=role, actor={"kind": "cli", "id": "test", "name": "test"},
                           now=dt.datetime.now(dt.timezone.utc))


def start(browser, tenant_id) -> str:
    """Presses "Continue with single sign-on" for ``tenant_id``; returns the provider's authorization URL."""
    page = browser.get(f"/signin/sso?tenant={tenant_id}")
    assert page.status_code == 200, page.text
    m = REFRESH.search(page.text)
    assert m, page.text
    return html.unescape(m.group(1))


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def login_at_provider(provider, auth_url: str, login: str) -> str:
    """The callback URL the provider sends the browser back to once ``login`` signed in and consented."""
    from vigint.console import oidc

    return provider.sign_in(auth_url, login, redirect_prefix=oidc.redirect_uri())


def signed_in(browser) -> bool:
    return browser.get("/").status_code == 200


def audit_actions(tenant_id):
    from vigint import pipeline

    return [d.to_dict() for d in pipeline.tenant_ref(tenant_id).collection("audit").stream()]


@pytest.fixture
def browser(app):
    return app.test_client()


def test_sso_signs_the_mapped_user_in_and_audits(app, tenant, oidc_provider):  # noqa: F811
    from vigint import clients
    from vigint.console import sessions, users

    users.put_user(tenant.tenant_id, email="Alice@Example.com", role="operator")
    configure(tenant.tenant_id, oidc_provider)
    browser = app.test_client()
    auth_url = start(browser, tenant.tenant_id)
    q = parse_qs(urlsplit(auth_url).query)
    assert auth_url.startswith(oidc_provider.issuer + "/auth?")
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["client_id"] == ["vigint-console"] and q["response_type"] == ["code"]
    assert "openid" in q["scope"][0].split() and q["state"][0] and q["nonce"][0]
    cookie = browser.get_cookie("vigint_oidc", path="/signin/oidc")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"

    back = login_at_provider(oidc_provider, auth_url, "alice")
    flow_cookie = cookie.value
    answer = browser.get(callback_path(back))
    assert answer.status_code == 303 and answer.headers["Location"] == "/", answer.text
    home = browser.get("/")
    assert home.status_code == 200 and "alice@example.com" in home.text and "operator" in home.text
    assert browser.get_cookie("vigint_oidc", path="/signin/oidc") is None  # the flow's cookie is cleared

    session_id = browser.get_cookie(sessions.cookie_name()).value
    doc = clients.firestore().collection(sessions.COLLECTION).document(sessions.key_of(session_id)).get().to_dict()
    assert doc["method"] == "oidc" and doc["user_id"] == users.user_id_of("alice@example.com")
    signins = [a for a in audit_actions(tenant.tenant_id) if a["action"] == "user.signin"]
    assert [a["details"]["method"] for a in signins] == ["oidc"]
    assert signins[0]["target"]["id"] == users.user_id_of("alice@example.com")

    # the same callback again, with the same flow cookie, on another browser: the state is used up
    other = app.test_client()
    other.set_cookie("vigint_oidc", flow_cookie, path="/signin/oidc")
    again = other.get(callback_path(back))
    assert again.status_code == 400 and "expired or was already used" in again.text
    assert not signed_in(other)


def test_state_is_single_use_and_a_replayed_code_is_refused(browser, tenant, oidc_provider):  # noqa: F811
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="alice@example.com", role="viewer")
    configure(tenant.tenant_id, oidc_provider)
    first = login_at_provider(oidc_provider, start(browser, tenant.tenant_id), "alice")
    cookie = browser.get_cookie("vigint_oidc", path="/signin/oidc").value
    assert browser.get(callback_path(first)).status_code == 303
    browser.post("/signout", data={"csrf_token": csrf_of(browser.get("/").text)})
    assert not signed_in(browser)

    # the browser's own flow cookie put back: its state document was used up by the first callback
    browser.set_cookie("vigint_oidc", cookie, path="/signin/oidc")
    used = browser.get(callback_path(first))
    assert used.status_code == 400 and "already used" in used.text
    assert not signed_in(browser)

    # a fresh flow (new state, new PKCE verifier) handed the first flow's code: the provider refuses it
    start(browser, tenant.tenant_id)
    fresh_state = browser_state(browser)
    code = parse_qs(urlsplit(first).query)["code"][0]
    replay = browser.get("/signin/oidc/callback?" + urlencode({"code": code, "state": fresh_state}))
    assert replay.status_code == 400 and "did not accept" in replay.text
    assert not signed_in(browser)


def browser_state(browser) -> str:
    """The ``state`` of the browser's current flow (read from its Firestore document, as a test may)."""
    from vigint.console import oidc

    cookie = browser.get_cookie("vigint_oidc", path="/signin/oidc").value
    return oidc._state_ref(cookie).get().to_dict()["state"]


def test_bad_state_missing_cookie_and_provider_error_are_refused(app, tenant, oidc_provider):  # noqa: F811
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="alice@example.com", role="viewer")
    configure(tenant.tenant_id, oidc_provider)
    browser = app.test_client()
    back = login_at_provider(oidc_provider, start(browser, tenant.tenant_id), "alice")
    q = parse_qs(urlsplit(back).query)

    # another browser (no flow cookie) with the right code and state: not its flow
    stranger = app.test_client()
    r = stranger.get(callback_path(back))
    assert r.status_code == 400 and not signed_in(stranger)

    # the right browser, a state that differs: refused, and the flow is spent
    r = browser.get("/signin/oidc/callback?" + urlencode({"code": q["code"][0], "state": q["state"][0] + "x"}))
    assert r.status_code == 400 and not signed_in(browser)
    r = browser.get(callback_path(back))
    assert r.status_code == 400 and not signed_in(browser)

    # the provider's error answer
    start(browser, tenant.tenant_id)
    r = browser.get("/signin/oidc/callback?" + urlencode({"error": "access_denied", "state": browser_state(browser)}))
    assert r.status_code == 400 and "refused the sign-in" in r.text and not signed_in(browser)


def test_wrong_nonce_is_refused(browser, tenant, oidc_provider):  # noqa: F811
    from vigint.console import oidc, users

    users.put_user(tenant.tenant_id, email="alice@example.com", role="viewer")
    configure(tenant.tenant_id, oidc_provider)
    auth_url = start(browser, tenant.tenant_id)
    cookie = browser.get_cookie("vigint_oidc", path="/signin/oidc").value
    # the ID token will carry the nonce sent to the provider; the flow now expects another one
    oidc._state_ref(cookie).update({"nonce": "another-nonce"})
    r = browser.get(callback_path(login_at_provider(oidc_provider, auth_url, "alice")))
    assert r.status_code == 400 and "could not be verified" in r.text
    assert not signed_in(browser)


@pytest.mark.parametrize("login, status, text", [
    ("bob", 403, "not verified"),           # email_verified false at the provider
    ("carol", 403, "may not sign in here"),  # other.org is not an allowed domain (the user exists)
    ("dave", 403, "no account"),             # no user, auto-create off
    ("erin", 403, "disabled"),               # the user is disabled
])
def test_identity_the_tenant_does_not_accept_is_refused(app, tenant, oidc_provider, login, status, text):  # noqa: F811
    from vigint.console import users

    for email in ("bob@example.com", "carol@other.org", "erin@example.com"):
        users.put_user(tenant.tenant_id, email=email, role="admin")
    users.users_col(tenant.tenant_id).document(users.user_id_of("erin@example.com")).update({"status": "disabled"})
    configure(tenant.tenant_id, oidc_provider)
    browser = app.test_client()
    r = browser.get(callback_path(login_at_provider(oidc_provider, start(browser, tenant.tenant_id), login)))
    assert r.status_code == status and text in r.text, r.text
    assert not signed_in(browser)
    assert users.get_user(tenant.tenant_id, users.user_id_of("dave@example.com")) is None
    assert users.users_col(tenant.tenant_id).document(users.user_id_of("erin@example.com")).get().get("status") \
        == "disabled"
    assert not [a for a in audit_actions(tenant.tenant_id) if a["action"] == "user.signin"]


def test_unknown_user_of_an_allowed_domain_is_created_when_configured(browser, tenant, oidc_provider):  # noqa: F811
    from vigint.console import users

    configure(tenant.tenant_id, oidc_provider, domains="other.org example.com", auto_create=True, role="operator")
    r = browser.get(callback_path(login_at_provider(oidc_provider, start(browser, tenant.tenant_id), "dave")))
    assert r.status_code == 303, r.text
    user = users.get_user(tenant.tenant_id, users.user_id_of("dave@example.com"))
    assert user is not None and user.role == "operator" and user.site_ids is None and user.name == "Dave New"
    assert "dave@example.com" in browser.get("/").text
    actions = [a["action"] for a in audit_actions(tenant.tenant_id)]
    assert "user.create" in actions and "user.signin" in actions


def test_unknown_tenant_and_tenant_without_sso_get_the_same_answer(app, tenant, oidc_provider):  # noqa: F811
    browser = app.test_client()
    answers = [browser.get(f"/signin/sso?tenant={t}") for t in ("t-nosuchtenant", tenant.tenant_id, "Bad!Id")]
    assert {a.status_code for a in answers} == {400}
    bodies = {re.sub(r'content="[^"]*"', "", a.text) for a in answers}
    assert len(bodies) == 1 and "not available for this organisation" in bodies.pop()
    assert browser.get_cookie("vigint_oidc", path="/signin/oidc") is None


def test_sso_settings_admin_only_csrf_secret_never_shown_audited(client, app, tenant, oidc_provider):  # noqa: F811
    from vigint import pipeline
    from vigint.console import oidc

    viewer_client = app.test_client()
    sign_in(viewer_client, tenant.tenant_id, "op@example.com", role="operator")
    assert viewer_client.get("/settings/sso").status_code == 403

    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/sso")
    assert page.status_code == 200 and oidc.redirect_uri() in page.text
    token = csrf_of(page.text)
    secret = oidc_provider.clients[0]["client_secret"]
    form = {"op": "save", "issuer": oidc_provider.issuer + "/", "client_id": "vigint-console", "client_secret": secret,
            "allowed_domains": "Example.com, @example.org", "auto_create_role": "viewer"}
    assert client.post("/settings/sso", data=form).status_code == 403  # no CSRF token
    assert oidc.get_config(tenant.tenant_id) is None
    bad = client.post("/settings/sso", data={**form, "csrf_token": token, "issuer": "ftp://x.example.com"})
    assert bad.status_code == 400 and "issuer" in bad.text and secret not in bad.text
    bad = client.post("/settings/sso", data={**form, "csrf_token": token, "allowed_domains": "not a domain!"})
    assert bad.status_code == 400 and "not a domain name" in bad.text
    assert client.post("/settings/sso", data={**form, "csrf_token": token, "auto_create_role": "owner"}).status_code \
        == 400
    ok = client.post("/settings/sso", data={**form, "csrf_token": token, "auto_create": "on"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/settings/sso?saved=saved"
    cfg = oidc.get_config(tenant.tenant_id)
    assert cfg.issuer == oidc_provider.issuer and cfg.allowed_domains == ("example.com", "example.org")
    assert cfg.auto_create and cfg.has_secret

    shown = client.get("/settings/sso?saved=saved").text
    assert secret not in shown and "vigint-console" in shown and "Saved" in shown
    stored = pipeline.tenant_ref(tenant.tenant_id).collection("console").document("sso").get().to_dict()
    assert secret not in str(stored) and stored["client_secret_enc"].startswith("v1.")
    assert oidc.decrypt_secret(tenant.tenant_id, stored["client_secret_enc"]) == secret
    with pytest.raises(Exception):
        oidc.decrypt_secret("t-another-tenant", stored["client_secret_enc"])

    # saving again without a secret keeps the stored one
    assert client.post("/settings/sso", data={**form, "csrf_token": token, "client_secret": ""}).status_code == 303
    again = pipeline.tenant_ref(tenant.tenant_id).collection("console").document("sso").get().to_dict()
    assert oidc.decrypt_secret(tenant.tenant_id, again["client_secret_enc"]) == secret

    entries = [a for a in audit_actions(tenant.tenant_id) if a["action"] == "settings.sso"]
    assert len(entries) == 2 and [e["details"]["secret_changed"] for e in sorted(entries, key=lambda e: e["at"])] \
        == [True, False]
    assert all(secret not in str(e) for e in entries)
    assert entries[0]["actor"]["kind"] == "user"

    # turned off: the settings and the secret are gone, sign-in refused
    assert client.post("/settings/sso", data={"op": "remove", "csrf_token": token}).status_code == 303
    assert oidc.get_config(tenant.tenant_id) is None
    assert app.test_client().get(f"/signin/sso?tenant={tenant.tenant_id}").status_code == 400


def test_id_token_validation_on_real_provider_tokens(oidc_provider, fenv):  # noqa: F811
    """``validate_id_token`` on ID tokens the provider really signed: accepted as they are; refused for
    another audience, issuer, nonce, after expiry, against other keys, and as an HS256 forgery."""
    from authlib.integrations.requests_client import OAuth2Session
    from joserfc import jwk, jwt
    from joserfc.errors import JoseError

    from vigint.console import oidc

    c = oidc_provider.clients[1]
    meta = requests.get(oidc_provider.issuer + "/.well-known/openid-configuration", timeout=5).json()
    rp = OAuth2Session(c["client_id"], c["client_secret"], scope="openid email",
                       redirect_uri=oidc.redirect_uri(), code_challenge_method="S256")
    verifier = "v" * 64
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], nonce="n-123", code_verifier=verifier)
    back = oidc_provider.sign_in(url, "alice", redirect_prefix=oidc.redirect_uri())
    code = parse_qs(urlsplit(back).query)["code"][0]
    id_token = rp.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier, timeout=5)["id_token"]
    keys = requests.get(meta["jwks_uri"], timeout=5).json()
    now = dt.datetime.now(dt.timezone.utc)
    good = dict(jwks=keys, issuer=oidc_provider.issuer, client_id=c["client_id"], nonce="n-123", now=now)

    claims = oidc.validate_id_token(id_token, **good)
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True and claims["sub"] == "alice"
    for change in ({"client_id": "vigint-console"}, {"issuer": oidc_provider.issuer + "/other"},
                   {"nonce": "n-456"}, {"now": dt.datetime.fromtimestamp(claims["exp"], dt.timezone.utc)
                                        + dt.timedelta(seconds=oidc.CLOCK_LEEWAY_S + 1)},
                   {"jwks": {"keys": [jwk.RSAKey.generate_key(2048, parameters={"kid": "test-rs256"}).as_dict(
                       private=False)]}}):
        with pytest.raises(JoseError):
            oidc.validate_id_token(id_token, **{**good, **change})
    forged = jwt.encode({"alg": "HS256"}, {**claims}, jwk.OctKey.import_key(c["client_secret"]))
    with pytest.raises(JoseError):
        oidc.validate_id_token(forged, **{**good, "jwks": {"keys": [jwk.OctKey.import_key(
            c["client_secret"]).as_dict()]}})


def test_flows_started_per_client_ip_are_limited(app, tenant, oidc_provider, monkeypatch):  # noqa: F811
    from vigint.console import oidc

    configure(tenant.tenant_id, oidc_provider)
    monkeypatch.setattr(oidc, "STARTS_PER_IP", 2)
    browser = app.test_client()
    answers = [browser.get(f"/signin/sso?tenant={tenant.tenant_id}").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    other_ip = app.test_client().get(f"/signin/sso?tenant={tenant.tenant_id}",
                                     environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other_ip.status_code == 200


def test_the_provider_subject_is_pinned_at_the_first_sign_in(app, tenant, oidc_provider):  # noqa: F811
    from vigint.console import oidc, users

    users.put_user(tenant.tenant_id, email="alice@example.com", role="viewer")
    configure(tenant.tenant_id, oidc_provider)
    first = app.test_client()
    assert first.get(callback_path(login_at_provider(oidc_provider, start(first, tenant.tenant_id), "alice"))) \
        .status_code == 303
    ref = users.users_col(tenant.tenant_id).document(users.user_id_of("alice@example.com"))
    slot = oidc.subject_slot(oidc_provider.issuer)
    assert ref.get().to_dict()["oidc_subjects"] == {slot: "alice"}
    # as if the provider had since given alice@example.com to another person (another subject)
    ref.update({f"oidc_subjects.{slot}": "the-first-alice"})
    second = app.test_client()
    r = second.get(callback_path(login_at_provider(oidc_provider, start(second, tenant.tenant_id), "alice")))
    assert r.status_code == 403 and "another person" in r.text and not signed_in(second)


def test_keys_rotated_since_cached_are_fetched_again(browser, tenant, oidc_provider):  # noqa: F811
    import time

    from joserfc import jwk

    from vigint.console import oidc, users

    users.put_user(tenant.tenant_id, email="alice@example.com", role="viewer")
    configure(tenant.tenant_id, oidc_provider)
    uri = oidc.metadata(oidc_provider.issuer)["jwks_uri"]
    stale = {"keys": [jwk.RSAKey.generate_key(2048, parameters={"kid": "test-rs256"}).as_dict(private=False)]}
    oidc._JWKS[uri] = (time.monotonic(), stale)  # as if the provider had rotated its key since the last fetch
    r = browser.get(callback_path(login_at_provider(oidc_provider, start(browser, tenant.tenant_id), "alice")))
    assert r.status_code == 303, r.text
    assert oidc._JWKS[uri][1] != stale


def test_issuer_and_endpoint_urls_accepted(fenv):  # noqa: F811
    from vigint.console import oidc

    assert oidc.check_issuer(" https://login.example.com/tenant/v2.0/ ") == "https://login.example.com/tenant/v2.0"
    assert oidc.check_issuer("http://127.0.0.1:8080") == "http://127.0.0.1:8080"  # the console is on http here
    for bad in ("http://login.example.com", "ftp://login.example.com", "https://login.example.com?x=1",
                "https://user@login.example.com", "javascript:alert(1)", ""):
        with pytest.raises(oidc.ConfigError):
            oidc.check_issuer(bad)
    assert oidc._endpoint_ok("https://login.example.com/oauth2/authorize?p=1")
    assert not any(oidc._endpoint_ok(u) for u in ("javascript:alert(1)", "data:text/html,x", None, 7))
