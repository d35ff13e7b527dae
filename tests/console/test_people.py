"""Users and roles on the real console entry point and the emulators: invitations through the real SMTP server
whose link signs the invitee in, role and site changes on the next request, disabling (sessions revoked at
once, not back after re-enabling), the owner rules, another tenant's user ids, escaping of names."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import LINK, csrf_of, sign_in


def _uid(email):
    from vigint.console import users

    return users.user_id_of(email)


def _doc(tenant_id, email):
    from vigint.console import users

    snap = users.users_col(tenant_id).document(_uid(email)).get()
    return snap.to_dict() if snap.exists else None


def _audit(tenant_id, action):
    from vigint import audit

    return [e for e in audit.entries(tenant_id, limit=200) if e["action"] == action]


def _invite(client, page_html, **fields):
    data = {"email": "", "name": "", "role": "viewer", "scope": "all", "csrf_token": csrf_of(page_html)}
    data.update(fields)
    return client.post("/settings/users", data=data)


def test_invite_emails_a_link_that_signs_the_invitee_in(client, app, tenant, smtp_sink):
    from vigint import pipeline
    from vigint.console import sites

    pipeline.tenant_ref(tenant.tenant_id).update({"name": "Acme Depot"})
    sites.put_site(tenant.tenant_id, "north", name="North yard", time_zone="Europe/Paris")
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    smtp_sink.clear()
    page = client.get("/settings/users")
    assert page.status_code == 200 and "boss@example.com" in page.text
    resp = _invite(client, page.text, email="New.Person@Example.com", name="New Person", role="operator",
                   scope="some", site_ids="north")
    assert resp.status_code == 303 and resp.headers["Location"] == "/settings/users?done=invited"
    doc = _doc(tenant.tenant_id, "new.person@example.com")
    assert doc["role"] == "operator" and doc["site_ids"] == ["north"] and doc["status"] == "invited"
    assert doc["created_by"] == "boss@example.com"
    mails = smtp_sink.messages()
    assert len(mails) == 1 and mails[0]["To"] == "new.person@example.com"
    text = mails[0].get_content()
    assert "boss@example.com" in text and "Acme Depot" in text and "operator" in text
    listing = client.get("/settings/users?done=invited").text
    assert "Invitation sent." in listing and "North yard" in listing and "invited" in listing
    entry = _audit(tenant.tenant_id, "user.invite")[0]
    assert entry["details"] == {"email": "new.person@example.com", "role": "operator", "sites": "north"}
    # the invitee, in another browser, signs in with the e-mailed link
    other = app.test_client()
    url = LINK.search(text).group(1)
    confirm = other.get(url[url.index("/signin/link"):])
    assert confirm.status_code == 200 and "new.person@example.com" in confirm.text
    used = other.post("/signin/link", data={"t": url.split("t=")[1], "csrf_token": csrf_of(confirm.text)})
    assert used.status_code == 303
    home = other.get("/")
    assert home.status_code == 200 and "new.person@example.com · operator" in home.text
    assert _doc(tenant.tenant_id, "new.person@example.com")["status"] == "active"
    assert other.get("/settings").status_code == 403


@pytest.mark.parametrize("fields, field, text, status", [
    ({"email": "not an address"}, "email", "not an e-mail address", 400),
    ({"email": "boss@example.com"}, "email", "already a user", 400),
    ({"email": "x@example.com", "role": "owner"}, "role", "only an owner", 403),
    ({"email": "x@example.com", "role": "root"}, "role", "choose a role", 400),
    ({"email": "x@example.com", "scope": "some"}, "sites", "tick at least one site", 400),
    ({"email": "x@example.com", "scope": "some", "site_ids": "nowhere"}, "sites", "unknown site", 400),
    ({"email": "x@example.com", "name": "n" * 101}, "name", "at most 100", 400),
])
def test_invite_errors(client, tenant, smtp_sink, fields, field, text, status):
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    smtp_sink.clear()
    page = client.get("/settings/users")
    resp = _invite(client, page.text, **fields)
    assert resp.status_code == status
    m = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', resp.text)
    assert m and text in m.group(1), resp.text
    assert smtp_sink.messages() == [] and _doc(tenant.tenant_id, "x@example.com") is None


def test_owner_may_invite_an_owner(client, tenant, smtp_sink):
    sign_in(client, tenant.tenant_id, "owner@example.com", role="owner")
    page = client.get("/settings/users")
    assert _invite(client, page.text, email="co@example.com", role="owner").status_code == 303
    assert _doc(tenant.tenant_id, "co@example.com")["role"] == "owner"


def test_role_change_takes_effect_on_the_next_request(client, app, tenant):
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    other = app.test_client()
    sign_in(other, tenant.tenant_id, "ann@example.com", role="viewer")
    assert other.get("/settings").status_code == 403
    page = client.get(f"/settings/users/{_uid('ann@example.com')}")
    assert page.status_code == 200
    resp = client.post(f"/settings/users/{_uid('ann@example.com')}", data={
        "name": "Ann", "role": "admin", "scope": "all", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303
    assert other.get("/settings").status_code == 200  # her next request, same session
    entry = _audit(tenant.tenant_id, "user.update")[0]
    assert entry["details"]["role"] == "viewer->admin" and entry["target"]["id"] == _uid("ann@example.com")
    # and back down, limited to a site: settings are gone again at once
    from vigint.console import sites

    sites.put_site(tenant.tenant_id, "south", name="South", time_zone=None)
    resp = client.post(f"/settings/users/{_uid('ann@example.com')}", data={
        "name": "Ann", "role": "admin", "scope": "some", "site_ids": "south", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303 and _doc(tenant.tenant_id, "ann@example.com")["site_ids"] == ["south"]
    assert other.get("/settings").status_code == 403


def test_disable_revokes_sessions_at_once_and_enable_does_not_revive_them(client, app, tenant):
    from vigint import clients
    from vigint.console import sessions

    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    victim = app.test_client()
    sign_in(victim, tenant.tenant_id, "eve@example.com", role="operator")
    assert victim.get("/").status_code == 200
    page = client.get(f"/settings/users/{_uid('eve@example.com')}")
    resp = client.post(f"/settings/users/{_uid('eve@example.com')}/disable", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303
    assert victim.get("/").status_code == 303 and victim.get("/").headers["Location"] == "/signin"
    assert _doc(tenant.tenant_id, "eve@example.com")["status"] == "disabled"
    live = [s for s in clients.firestore().collection(sessions.COLLECTION).stream()
            if (s.to_dict() or {}).get("user_id") == _uid("eve@example.com") and not s.to_dict().get("revoked_at")]
    assert live == []
    assert _audit(tenant.tenant_id, "user.disable")[0]["details"]["sessions_ended"] == 1
    assert "disabled" in client.get("/settings/users").text
    resp = client.post(f"/settings/users/{_uid('eve@example.com')}/enable", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303 and _doc(tenant.tenant_id, "eve@example.com")["status"] == "active"
    assert victim.get("/").status_code == 303  # the old session stays ended
    assert len(_audit(tenant.tenant_id, "user.enable")) == 1


def test_nobody_disables_themselves(client, tenant):
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    page = client.get(f"/settings/users/{_uid('boss@example.com')}")
    assert "Disable this user" not in page.text
    resp = client.post(f"/settings/users/{_uid('boss@example.com')}/disable", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 409 and "cannot disable yourself" in resp.text
    assert _doc(tenant.tenant_id, "boss@example.com")["status"] == "active"
    assert client.get("/settings").status_code == 200


def test_last_owner_cannot_be_demoted_or_disabled(client, app, tenant):
    sign_in(client, tenant.tenant_id, "only@example.com", role="owner")
    page = client.get(f"/settings/users/{_uid('only@example.com')}")
    resp = client.post(f"/settings/users/{_uid('only@example.com')}", data={
        "name": "Only", "role": "admin", "scope": "all", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 409 and "last owner" in resp.text
    assert _doc(tenant.tenant_id, "only@example.com")["role"] == "owner"
    # a second owner signs in and tries to disable the first after being demoted... first: two owners, then
    # the first may step down; then the second is the last one
    second = app.test_client()
    sign_in(second, tenant.tenant_id, "second@example.com", role="owner")
    resp = client.post(f"/settings/users/{_uid('only@example.com')}", data={
        "name": "Only", "role": "admin", "scope": "all", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303 and _doc(tenant.tenant_id, "only@example.com")["role"] == "admin"
    page2 = second.get(f"/settings/users/{_uid('second@example.com')}")
    resp = second.post(f"/settings/users/{_uid('second@example.com')}", data={
        "name": "Second", "role": "viewer", "scope": "all", "csrf_token": csrf_of(page2.text)})
    assert resp.status_code == 409 and _doc(tenant.tenant_id, "second@example.com")["role"] == "owner"
    # a disabled owner does not count: with the other owner disabled, the remaining one is the last
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="third@example.com", role="owner")
    users.users_col(tenant.tenant_id).document(_uid("third@example.com")).update({"status": "disabled"})
    resp = second.post(f"/settings/users/{_uid('second@example.com')}", data={
        "name": "Second", "role": "viewer", "scope": "all", "csrf_token": csrf_of(page2.text)})
    assert resp.status_code == 409


def test_admin_cannot_make_or_change_an_owner(client, tenant):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="own@example.com", role="owner")
    users.put_user(tenant.tenant_id, email="op@example.com", role="operator")
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    page = client.get(f"/settings/users/{_uid('op@example.com')}")
    assert '<option value="owner"' not in page.text
    resp = client.post(f"/settings/users/{_uid('op@example.com')}", data={
        "name": "Op", "role": "owner", "scope": "all", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 403 and _doc(tenant.tenant_id, "op@example.com")["role"] == "operator"
    owner_page = client.get(f"/settings/users/{_uid('own@example.com')}")
    assert owner_page.status_code == 200 and "only an owner can change them" in owner_page.text
    for path, data in ((f"/settings/users/{_uid('own@example.com')}", {"name": "x", "role": "viewer", "scope": "all"}),
                       (f"/settings/users/{_uid('own@example.com')}/disable", {})):
        resp = client.post(path, data={**data, "csrf_token": csrf_of(page.text)})
        assert resp.status_code == 403, path
    doc = _doc(tenant.tenant_id, "own@example.com")
    assert doc["role"] == "owner" and doc["status"] != "disabled"


def test_user_of_another_tenant_is_404(client, tenant, fenv):
    from vigint.console import users

    other = fenv.provision()["tenant_id"]
    users.put_user(other, email="theirs@example.com", role="viewer")
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    home = client.get("/settings/users").text
    uid = _uid("theirs@example.com")
    missing = client.get("/settings/users/0123456789abcdef")
    assert missing.status_code == 404
    got = client.get(f"/settings/users/{uid}")
    assert got.status_code == 404 and got.text == missing.text.replace("0123456789abcdef", uid)
    assert client.get("/settings/users/not-an-id").status_code == 404
    for suffix in ("", "/disable", "/enable", "/invite"):
        resp = client.post(f"/settings/users/{uid}{suffix}", data={"name": "x", "role": "viewer", "scope": "all",
                                                                   "csrf_token": csrf_of(home)})
        assert resp.status_code == 404, suffix
    snap = users.users_col(other).document(uid).get().to_dict()
    assert snap["status"] == "invited" and snap["role"] == "viewer" and snap["name"] == "theirs"


def test_user_names_are_escaped(client, tenant):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="mal@example.com", role="viewer",
                   name='<script>alert("x")</script><b onmouseover=1>')
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    for path in ("/settings/users", f"/settings/users/{_uid('mal@example.com')}"):
        body = client.get(path).text
        assert "<script>alert" not in body and "<b onmouseover" not in body, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body, path


def test_resend_invitation(client, tenant, smtp_sink):
    from vigint.console import users

    users.put_user(tenant.tenant_id, email="late@example.com", role="viewer")
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    smtp_sink.clear()
    page = client.get(f"/settings/users/{_uid('late@example.com')}")
    assert "Send invitation again" in page.text
    resp = client.post(f"/settings/users/{_uid('late@example.com')}/invite", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303
    assert [m["To"] for m in smtp_sink.messages()] == ["late@example.com"]
    # not for someone who is already active
    resp = client.post(f"/settings/users/{_uid('boss@example.com')}/invite", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 409
