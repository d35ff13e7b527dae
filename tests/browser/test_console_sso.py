"""Single sign-on in Chromium: an admin sets the tenant's provider up at /settings/sso, then a person signs in
with the sign-in page's single sign-on button, the real oidc-provider's own login and consent pages, and lands
on the console's overview signed in. The sign-in leg runs with the console's CSP enforced (no ``bypass_csp``),
so a navigation the CSP would block (``form-action``) fails the test; axe runs on each console page in a
context that bypasses the CSP (axe's script is injected)."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import axe_violations, screenshots, sign_in
from tests.oidc.provider import oidc_provider  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_sso_journey(new_page, console_url, tenant_id, oidc_provider):  # noqa: F811
    from vigint.console import users

    users.put_user(tenant_id, email="alice@example.com", role="operator", name="Alice")
    client = oidc_provider.clients[0]

    # the admin configures the provider
    admin = new_page(bypass_csp=True)
    sign_in(admin, console_url, tenant_id, "boss@example.com", role="admin")
    admin.goto(console_url + "/settings/sso")
    assert axe_violations(admin) == []
    admin.get_by_label("Issuer URL").fill(oidc_provider.issuer)
    admin.get_by_label("Client id").fill(client["client_id"])
    admin.get_by_label("Client secret").fill(client["client_secret"])
    admin.get_by_label("Allowed e-mail domains").fill("example.com")
    admin.get_by_role("button", name="Save").click()
    admin.wait_for_url(re.compile(r".*/settings/sso\?saved=saved$"))
    assert admin.get_by_text("Saved. Single sign-on is on.").is_visible()
    assert client["client_secret"] not in admin.content()
    assert admin.get_by_label("Client id").input_value() == client["client_id"]
    assert axe_violations(admin) == []
    screenshots(admin, "sso-settings")

    # the pages a person sees, checked with axe (sign-in page, a refused single sign-on)
    probe = new_page(bypass_csp=True)
    probe.goto(console_url + "/signin")
    assert axe_violations(probe) == []
    screenshots(probe, "sso-signin")
    probe.goto(console_url + "/signin/sso?tenant=t-nosuch")
    assert probe.get_by_text("Single sign-on is not available for this organisation.").is_visible()
    assert axe_violations(probe) == []
    screenshots(probe, "sso-refused")

    # the person: CSP enforced, every violation the browser reports is collected
    page = new_page()
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(console_url + "/signin")
    page.get_by_label(re.compile("single sign-on", re.I)).fill(tenant_id)
    page.get_by_role("button", name="Continue with single sign-on").click()
    page.wait_for_url(oidc_provider.issuer + "/interaction/**")
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("any password")
    screenshots(page, "sso-provider-login")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page
    page.wait_for_url(console_url + "/")
    assert page.get_by_text("Signed in as alice@example.com · operator").is_visible()
    assert csp_errors == []
    screenshots(page, "sso-signed-in")
    session_cookie = [c for c in page.context.cookies() if c["name"] == "vigint_session"]
    assert len(session_cookie) == 1 and session_cookie[0]["httpOnly"]
    assert not [c for c in page.context.cookies() if c["name"] == "vigint_oidc"]

    # the overview the person landed on, checked with axe in the admin's (CSP-bypassing) context
    admin.goto(console_url + "/")
    assert axe_violations(admin) == []
