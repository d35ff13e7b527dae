"""The link in the alert email, opened in a real browser (Debian's Chromium, driven by Playwright), plays
the clip: the page loads, the <video> decodes H.264 and its playback position advances."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.conftest import synthetic_event, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_the_emailed_link_plays_the_clip_in_chromium(stack, tmp_path):
    from playwright.sync_api import sync_playwright

    from infra.local.smtp_sink import read_messages
    from tests.e2e.test_delivery_guarantees import _deliverer
    from vigint_edge.spool import Spool

    creds = stack.provision("browser", "nuc-5", recipients=["viewer@browser.example"])
    spool = Spool(tmp_path / "spool", max_bytes=100 * 1024**2)
    synthetic_event(spool, "browser", "nuc-5", "porch", tmp_path, seconds=4)
    deliverer, _ = _deliverer(stack, creds, spool)
    assert deliverer.deliver_pending() == 1
    mail = wait_for(lambda: [m for m in read_messages(stack.maildir) if "browser.example" in m["To"]],
                    timeout=60, what="the alert email")[0]
    link = re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", mail.get_body(("plain",)).get_content()).group(0)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            # The page's CSP forbids eval; the test's own probes need it, the page's scripts do not.
            page = browser.new_context(bypass_csp=True).new_page()
            assert page.goto(link).status == 200
            page.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=20000)
            page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
            page.wait_for_function("() => document.querySelector('video').currentTime > 0.5", timeout=20000)
            state = page.evaluate("() => { const v = document.querySelector('video');"
                                  " return {w: v.videoWidth, d: v.duration, error: v.error && v.error.code}; }")
        finally:
            browser.close()
    assert state["error"] is None
    assert state["w"] == 320 and 3.5 <= state["d"] <= 4.5
