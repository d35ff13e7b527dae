"""Settings in Chromium: an owner goes through every settings page (axe-core on each, screenshots at desktop and
phone widths), invites a viewer limited to one site; the invitee signs in from the e-mailed link (the real SMTP
server), sees only that site's cameras and cannot reach any settings page."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import axe_violations, screenshots, sign_in

pytestmark = pytest.mark.slow
LINK = re.compile(r"https?://\S+/signin/link\?t=[A-Za-z0-9_-]+")


def _check(page, name, shots=True):
    assert axe_violations(page) == [], name
    if shots:
        screenshots(page, name)


def _tenant(tenant_id):
    from vigint import audit, pipeline
    from vigint.console import sites

    tenant = pipeline.tenant_ref(tenant_id)
    tenant.update({"name": "Acme Depot"})
    sites.put_site(tenant_id, "north", name="North yard", time_zone="Europe/Paris")
    sites.put_site(tenant_id, "south", name="South dock", time_zone="Europe/Paris")
    tenant.collection("cameras").document("gate").set({"device_id": "nuc-1", "name": "Gate", "site_id": "north"})
    tenant.collection("cameras").document("dock").set({"device_id": "nuc-1", "name": "Dock", "site_id": "south"})
    audit.record(tenant_id, actor={"kind": "api_key", "id": "k1", "name": "Night guard"}, action="event.hold",
                 target_kind="event", target_id="evt_0001", details={"reason": "police case 118"})


def test_settings_pages(new_page, console_url, tenant_id):
    import datetime as dt

    from vigint import pipeline, usage

    _tenant(tenant_id)
    now = dt.datetime.now(dt.timezone.utc)
    for n, (camera, nbytes, tokens) in enumerate((("gate", 1_150_000, 6400), ("gate", 1_170_000, 6300),
                                                  ("dock", 1_140_000, 6500))):
        pipeline.event_ref(tenant_id, f"evt_{n:026d}").set({"camera_id": camera, "ingested_at": now,
                                                           "clip": {"bytes": nbytes},
                                                           "analysis": {"total_tokens": tokens}})
        usage.add(tenant_id, now=now, events=1, clip_bytes=nbytes, gemini_tokens=tokens)
    page = new_page(bypass_csp=True)
    sign_in(page, console_url, tenant_id, "lead@example.com", role="owner")
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(console_url + "/settings")
    _check(page, "settings-hub")

    page.get_by_role("link", name="Alert settings").click()
    page.wait_for_url(console_url + "/settings/alerts")
    page.get_by_label("Recipients").fill("ops@example.com\nnot-an-address")
    page.get_by_role("button", name="Save alert settings").click()
    page.locator("#recipients-error").wait_for()
    _check(page, "settings-alerts-error", shots=False)
    page.get_by_label("Recipients").fill("ops@example.com\nnight@example.com")
    page.get_by_label("Start", exact=True).fill("22:00")
    page.get_by_label("End", exact=True).fill("06:00")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save alert settings").click()
    page.get_by_text("Saved.").wait_for()
    page.get_by_label("Endpoint URL").fill("https://hooks.example.com/vigint")
    page.get_by_role("button", name="Set webhook").click()
    page.get_by_text("copy it now").wait_for()
    _check(page, "settings-alerts")

    page.goto(console_url + "/settings/api-keys")
    page.get_by_label("Name").fill("Night guard")
    page.get_by_role("button", name="Create key").click()
    page.get_by_text("copy it now").wait_for()
    _check(page, "settings-apikeys")

    page.goto(console_url + "/settings/usage")
    assert page.get_by_role("cell", name="Gate").is_visible()
    _check(page, "settings-usage")

    page.goto(console_url + "/settings/audit")
    assert page.get_by_text("apikey.create").first.is_visible()
    assert page.get_by_text("police case 118").is_visible()
    _check(page, "settings-audit")


def test_owner_invites_a_site_limited_viewer(new_page, console_url, tenant_id, smtp_sink):
    _tenant(tenant_id)
    page = new_page(bypass_csp=True)
    sign_in(page, console_url, tenant_id, "lead@example.com", role="owner")
    page.goto(console_url + "/settings/users")
    page.get_by_label("E-mail address").fill("guard@example.com")
    page.get_by_label("Name").fill("Night Guard")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_label("Only these sites:").check()
    page.get_by_label("North yard").check()
    smtp_sink.clear()
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text("Invitation sent.").wait_for()
    assert page.get_by_role("cell", name="North yard").is_visible()
    _check(page, "settings-users")
    page.get_by_role("link", name="Night Guard").click()
    page.get_by_role("heading", name="Night Guard").wait_for()
    _check(page, "settings-user-edit")

    # the invitee, in a browser of their own
    mail = [m for m in smtp_sink.messages() if m["To"] == "guard@example.com"][0]
    text = mail.get_content()
    assert "lead@example.com" in text and "Acme Depot" in text
    guest = new_page(bypass_csp=True)
    guest.goto(LINK.search(text).group(0))
    guest.get_by_role("button", name="Sign in").click()
    guest.wait_for_url(console_url + "/")
    assert guest.get_by_role("link", name="Gate").is_visible()
    assert guest.get_by_role("link", name="Dock").count() == 0
    assert guest.get_by_role("link", name="Settings").count() == 0
    _check(guest, "settings-invitee-overview")
    for path in ("/settings", "/settings/users", "/settings/alerts", "/settings/api-keys", "/settings/audit",
                 "/settings/usage"):
        resp = guest.goto(console_url + path)
        assert resp.status == 403, path
    assert guest.get_by_role("heading", name="Not allowed").is_visible()
    _check(guest, "settings-invitee-403")
