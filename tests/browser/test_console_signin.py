"""Signing in to the console in Chromium: the e-mailed link from the real SMTP server, its button, the sites
overview; no serious or critical axe-core violation on the sign-in pages and the overview."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import axe_violations, screenshots

pytestmark = pytest.mark.slow
LINK = re.compile(r"https?://\S+/signin/link\?t=[A-Za-z0-9_-]+")


def test_sign_in_from_the_emailed_link(new_page, console_url, tenant_id, smtp_sink):
    from vigint.console import users

    users.put_user(tenant_id, email="lead@example.com", role="owner")
    smtp_sink.clear()
    page = new_page(bypass_csp=True)
    page.goto(console_url + "/")
    assert page.url == console_url + "/signin"
    assert axe_violations(page) == []
    screenshots(page, "signin")
    page.get_by_label("E-mail address").fill("lead@example.com")
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    page.get_by_text("sign-in link is on its way").wait_for()
    mail = [m for m in smtp_sink.messages() if m["To"] == "lead@example.com"][0]
    link = LINK.search(mail.get_content()).group(0)
    page.goto(link)
    assert axe_violations(page) == []
    screenshots(page, "signin-confirm")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_url + "/")
    assert page.get_by_role("heading", name="Sites").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "overview")
    cookie = [c for c in page.context.cookies() if c["name"] == "vigint_session"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
