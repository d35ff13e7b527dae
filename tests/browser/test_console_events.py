"""The operator's journey in Chromium against the stack's console process: the sites overview with the camera's
tile, its events (infinite scroll, a new event appearing without a reload), the event page playing a real H.264
clip, the alerts inbox, acknowledging with a comment and the alert leaving the unacknowledged list; axe-core on
every page, screenshots of each at desktop and phone widths."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.conftest import axe_violations, screenshots, sign_in
from tests.console.events_helpers import alert_it, camera, put_event, site

pytestmark = pytest.mark.slow


def test_watch_and_acknowledge_an_alert(new_page, console_url, fenv):
    creds = fenv.provision(recipients=["ops@example.com"])
    t = creds["tenant_id"]
    site(t, "hq", "Head office", "Europe/Paris")
    camera(t, "lobby", name="Front lobby", site_id="hq")
    older = [put_event(t, camera_id="lobby", minutes_ago=60 + i, labels=["car"]) for i in range(27)]
    ev = fenv.ingested_event(creds)
    eid = ev["event_id"]
    alert_it(t, eid)

    page = new_page(bypass_csp=True)
    sign_in(page, console_url, t, "op@example.com", role="operator")
    assert page.get_by_role("heading", name="Head office").is_visible()
    page.locator(".camera-tile img").wait_for()
    assert page.locator(".camera-tile").get_by_text("1 unacknowledged").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "p1-overview")

    page.get_by_role("link", name="Front lobby").click()
    page.wait_for_url(f"{console_url}/events?camera_id=lobby")
    items = page.locator("#event-list > li.event-item")
    assert items.count() == 25
    assert axe_violations(page) == []
    screenshots(page, "p1-events")
    items.last.scroll_into_view_if_needed()  # htmx loads the next page when the last item shows
    page.wait_for_function("document.querySelectorAll('#event-list > li.event-item').length === 28")
    poller = page.locator("#events-poll").get_attribute("hx-get")
    newest = put_event(t, camera_id="lobby", start=dt.datetime.now(dt.timezone.utc), labels=["dog"])
    page.locator(f'#event-list a[href="/events/{newest}"]').first.wait_for(timeout=12000)  # polled, prepended
    assert page.locator("#event-list > li.event-item").first.locator(f'a[href="/events/{newest}"]').count() >= 1
    assert older[-1] in page.content()
    page.wait_for_function("(before) => document.getElementById('events-poll').getAttribute('hx-get') !== before",
                           arg=poller)  # the poller now asks for events newer than the new top one

    page.locator(f'.event-title a[href="/events/{eid}"]').click()
    page.wait_for_url(f"{console_url}/events/{eid}")
    page.evaluate("document.getElementById('clip').play()")
    page.wait_for_function("document.getElementById('clip').currentTime > 0.5", timeout=15000)
    assert page.get_by_role("heading", name="Acknowledgement").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "p1-event")

    page.get_by_role("link", name="Alerts", exact=True).click()
    page.wait_for_url(f"{console_url}/alerts")
    unacked = page.locator("#alert-list")
    assert unacked.locator(f'a[href="/events/{eid}"]').count() >= 1
    assert axe_violations(page) == []
    screenshots(page, "p1-alerts")

    unacked.locator(f'.event-title a[href="/events/{eid}"]').click()
    page.wait_for_url(f"{console_url}/events/{eid}")
    page.get_by_label("Comment (optional)").fill("Courier at the door, known.")
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text("Acknowledged.", exact=True).wait_for()
    assert page.get_by_text("Courier at the door, known.").is_visible()
    assert axe_violations(page) == []

    page.get_by_role("link", name="Alerts", exact=True).click()
    page.wait_for_url(f"{console_url}/alerts")
    assert page.locator(f'#alert-list a[href="/events/{eid}"]').count() == 0
    assert page.get_by_text("Every alert has been acknowledged.").is_visible()
    assert page.locator(f'section[aria-labelledby="acked-h"] a[href="/events/{eid}"]').count() >= 1
    assert axe_violations(page) == []
    screenshots(page, "p1-alerts-done")
