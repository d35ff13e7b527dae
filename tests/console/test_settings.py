"""Settings pages on the real console entry point and the emulators: the hub, alert settings (saved through the
tenant API's handler, errors next to the field, audited without secrets), the webhook (its secret never on a
page after it is set), API keys (shown once, revoked, audited, names escaped), and who may reach them."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import csrf_of, sign_in

SETTINGS_GETS = ["/settings", "/settings/alerts", "/settings/users", "/settings/api-keys", "/settings/audit",
                 "/settings/audit.csv", "/settings/usage"]
SETTINGS_POSTS = ["/settings/alerts", "/settings/alerts/webhook", "/settings/users",
                  "/settings/users/0123456789abcdef", "/settings/users/0123456789abcdef/disable",
                  "/settings/users/0123456789abcdef/enable", "/settings/users/0123456789abcdef/invite",
                  "/settings/api-keys", "/settings/api-keys/0123456789ab/revoke"]


def _tenant_doc(tenant_id):
    from vigint import pipeline

    return pipeline.tenant_ref(tenant_id).get().to_dict() or {}


def _audit(tenant_id, action):
    from vigint import audit

    return [e for e in audit.entries(tenant_id, limit=200) if e["action"] == action]


def _alert_form(html, **changes):
    base = {"recipients": "ops@example.com", "threshold": "1", "cooldown_seconds": "300",
            "link_ttl_hours": "168", "quiet_start": "", "quiet_end": "", "quiet_timezone": "",
            "csrf_token": csrf_of(html)}
    base.update(changes)
    return base


def test_hub_links_every_settings_page(client, tenant):
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings")
    assert page.status_code == 200
    for href in ("/settings/alerts", "/settings/users", "/settings/api-keys", "/settings/audit",
                 "/settings/usage", "/settings/sites", "/settings/sso"):
        assert f'href="{href}"' in page.text


def test_alert_settings_save_and_audit(client, tenant):
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/alerts")
    assert page.status_code == 200 and "ops@example.com" in page.text
    resp = client.post("/settings/alerts", data=_alert_form(
        page.text, recipients="a@example.com\nb@example.com, a@example.com", threshold="2", cooldown_seconds="600",
        link_ttl_hours="24", quiet_start="22:00", quiet_end="06:30", quiet_timezone="Europe/Paris"))
    assert resp.status_code == 303 and resp.headers["Location"] == "/settings/alerts?saved=1"
    doc = _tenant_doc(tenant.tenant_id)
    assert doc["alert"]["recipients"] == ["a@example.com", "b@example.com"]
    assert doc["alert"]["threshold"] == 2 and doc["alert"]["cooldown_seconds"] == 600
    assert doc["alert"]["link_ttl_seconds"] == 24 * 3600
    assert doc["quiet_hours"] == {"start": "22:00", "end": "06:30", "timezone": "Europe/Paris"}
    shown = client.get("/settings/alerts?saved=1").text
    assert "Saved." in shown and 'value="22:00"' in shown and '<option value="Europe/Paris" selected>' in shown
    entries = _audit(tenant.tenant_id, "settings.alerts")
    assert len(entries) == 1
    assert set(entries[0]["details"]["changed"].split(",")) == {
        "alert.recipients", "alert.threshold", "alert.cooldown_seconds", "alert.link_ttl_seconds", "quiet_hours"}
    assert entries[0]["actor"]["kind"] == "user" and entries[0]["actor"]["name"] == "admin@example.com"
    # removing the quiet hours (both times empty) and changing nothing else audits only that
    resp = client.post("/settings/alerts", data=_alert_form(
        shown, recipients="a@example.com\nb@example.com", threshold="2", cooldown_seconds="600", link_ttl_hours="24"))
    assert resp.status_code == 303 and _tenant_doc(tenant.tenant_id).get("quiet_hours") is None
    assert _audit(tenant.tenant_id, "settings.alerts")[0]["details"]["changed"] == "quiet_hours"


@pytest.mark.parametrize("changes, field, text", [
    ({"recipients": "ops@example.com\nnot-an-address"}, "recipients", "not an e-mail address: not-an-address"),
    ({"threshold": "7"}, "threshold", "a threat level from 0 to 3"),
    ({"cooldown_seconds": "-5"}, "cooldown_seconds", "whole seconds"),
    ({"cooldown_seconds": "soon"}, "cooldown_seconds", "whole seconds"),
    ({"link_ttl_hours": "0"}, "link_ttl_hours", "at most 720"),
    ({"quiet_start": "22:00"}, "quiet_end", "give both start and end"),
    ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_start", "start and end must differ"),
    ({"quiet_start": "22:00", "quiet_end": "05:00", "quiet_timezone": "Mars/Olympus"}, "quiet_timezone",
     "IANA time zone"),
])
def test_alert_settings_errors_show_next_to_the_field(client, tenant, changes, field, text):
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    before = _tenant_doc(tenant.tenant_id)
    page = client.get("/settings/alerts")
    resp = client.post("/settings/alerts", data=_alert_form(page.text, **changes))
    assert resp.status_code == 400
    m = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', resp.text)
    assert m and text in m.group(1), resp.text
    assert f'id="{field}"' in resp.text and f'aria-describedby="{field}-error"' in resp.text
    # the form keeps what was typed, and nothing was saved or audited
    for name, value in changes.items():
        if value and name != "quiet_timezone":  # a select cannot keep an unknown zone
            assert value.split("\n")[-1] in resp.text
    assert _tenant_doc(tenant.tenant_id).get("alert") == before.get("alert")
    assert _audit(tenant.tenant_id, "settings.alerts") == []


def test_recipient_names_are_escaped(client, tenant):
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/alerts")
    resp = client.post("/settings/alerts", data=_alert_form(page.text, recipients='<script>alert(1)</script>@x.io'))
    assert resp.status_code == 400
    assert "<script>alert(1)</script>" not in resp.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in resp.text


def test_webhook_secret_is_shown_once_and_never_again(client, tenant):
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/alerts")
    assert "not set" in page.text
    resp = client.post("/settings/alerts/webhook", data={"op": "set", "url": "https://hooks.example.com/v",
                                                          "secret": "", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 200
    secret = _tenant_doc(tenant.tenant_id)["alert"]["webhook"]["secret"]
    assert len(secret) >= 32 and secret in resp.text  # the made secret, this once
    assert _tenant_doc(tenant.tenant_id)["alert"]["webhook"]["url"] == "https://hooks.example.com/v"
    # replace with a typed secret: it is stored, never echoed
    typed = "typed-secret-0123456789-abcdef"
    resp = client.post("/settings/alerts/webhook", data={"op": "set", "url": "https://hooks.example.com/w",
                                                          "secret": typed, "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 200 and typed not in resp.text and secret not in resp.text
    assert _tenant_doc(tenant.tenant_id)["alert"]["webhook"] == {"url": "https://hooks.example.com/w", "secret": typed}
    # no page shows it; saving the alert form keeps the webhook
    for path in ("/settings/alerts", "/settings", "/settings/audit", "/settings/audit.csv", "/settings/usage"):
        body = client.get(path).text
        assert typed not in body and secret not in body, path
    assert "set (hidden)" in client.get("/settings/alerts").text
    assert client.post("/settings/alerts", data=_alert_form(page.text)).status_code == 303
    assert _tenant_doc(tenant.tenant_id)["alert"]["webhook"]["secret"] == typed
    entries = _audit(tenant.tenant_id, "settings.alerts")
    assert [e["details"].get("webhook") for e in entries if "webhook" in e["details"]] == ["replaced", "set"]
    assert all(typed not in str(e) and secret not in str(e) for e in entries)
    # errors: a non-https URL, a short secret
    bad = client.post("/settings/alerts/webhook", data={"op": "set", "url": "http://hooks.example.com/",
                                                         "secret": "", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and 'id="webhook-url-error"' in bad.text and "https://" in bad.text
    bad = client.post("/settings/alerts/webhook", data={"op": "set", "url": "https://hooks.example.com/",
                                                         "secret": "short", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and 'id="webhook-secret-error"' in bad.text
    assert _tenant_doc(tenant.tenant_id)["alert"]["webhook"]["url"] == "https://hooks.example.com/w"
    # remove
    resp = client.post("/settings/alerts/webhook", data={"op": "remove", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303 and "webhook" not in _tenant_doc(tenant.tenant_id)["alert"]
    assert _audit(tenant.tenant_id, "settings.alerts")[0]["details"]["webhook"] == "removed"


def test_api_keys_create_shown_once_revoke_and_audit(client, tenant):
    from vigint import api_keys

    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/api-keys")
    assert page.status_code == 200 and "No API keys yet" in page.text
    name = '<img src=x onerror=alert(1)> "Night" guard'
    resp = client.post("/settings/api-keys", data={"name": name, "role": "viewer", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 201
    key = re.search(r'<code class="secret">([^<]+)</code>', resp.text).group(1)
    listed = api_keys.list_keys(tenant.tenant_id)
    assert len(listed) == 1 and listed[0]["name"] == name and listed[0]["role"] == "viewer"
    key_id = listed[0]["key_id"]
    assert key_id in key
    assert "<img src=x" not in resp.text and "&lt;img src=x onerror=alert(1)&gt;" in resp.text
    again = client.get("/settings/api-keys")
    assert key not in again.text and key_id in again.text and "&lt;img src=x" in again.text
    created = _audit(tenant.tenant_id, "apikey.create")
    assert len(created) == 1 and created[0]["target"]["id"] == key_id and key not in str(created[0])
    # errors
    bad = client.post("/settings/api-keys", data={"name": "", "role": "viewer", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and 'id="key-name-error"' in bad.text
    bad = client.post("/settings/api-keys", data={"name": "x", "role": "owner", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and 'id="key-role-error"' in bad.text
    assert len(api_keys.list_keys(tenant.tenant_id)) == 1
    # revoke
    resp = client.post(f"/settings/api-keys/{key_id}/revoke", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == 303
    assert api_keys.list_keys(tenant.tenant_id)[0]["revoked"] is True
    assert _audit(tenant.tenant_id, "apikey.revoke")[0]["target"]["id"] == key_id


def test_api_key_of_another_tenant_is_404(client, tenant, fenv):
    from vigint import api_keys

    other = fenv.provision()["tenant_id"]
    _key, record = api_keys.create_key(other, role="admin", name="theirs")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/settings/api-keys")
    resp = client.post(f"/settings/api-keys/{record['key_id']}/revoke", data={"csrf_token": csrf_of(page.text)})
    missing = client.post("/settings/api-keys/0123456789ab/revoke", data={"csrf_token": csrf_of(page.text)})
    assert resp.status_code == missing.status_code == 404 and resp.text == missing.text
    assert api_keys.list_keys(other)[0]["revoked"] is False


@pytest.mark.parametrize("role, site_ids", [("viewer", None), ("operator", None), ("admin", ["north"])])
def test_settings_refused_below_admin_and_to_site_limited_users(client, tenant, role, site_ids):
    from vigint.console import sites

    from vigint import pipeline

    sites.put_site(tenant.tenant_id, "north", name="North", time_zone="UTC")
    hook = {"url": "https://hooks.example.com/x", "secret": "s" * 32}
    pipeline.tenant_ref(tenant.tenant_id).update({"alert.webhook": hook})
    home = sign_in(client, tenant.tenant_id, "someone@example.com", role=role, site_ids=site_ids)
    assert 'href="/settings"' not in home
    for path in SETTINGS_GETS:
        assert client.get(path).status_code == 403, path
    for path in SETTINGS_POSTS:
        assert client.post(path, data={"csrf_token": csrf_of(home), "op": "remove", "email": "x@example.com",
                                       "role": "admin", "name": "x"}).status_code == 403, path
    assert _tenant_doc(tenant.tenant_id)["alert"]["webhook"] == hook  # the refused "remove" did nothing
    from vigint import api_keys
    from vigint.console import users

    assert api_keys.list_keys(tenant.tenant_id) == []
    assert users.get_user(tenant.tenant_id, users.user_id_of("x@example.com")) is None
