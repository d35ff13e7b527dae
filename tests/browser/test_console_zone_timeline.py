"""An operator opens an event whose device reported zone entries and exits: from the events timeline to the event
page, where the detections and the entries/exits are one timeline in the site's time zone, readable on a phone;
axe-core on each page, screenshots at desktop and phone widths."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.conftest import axe_violations, screenshots, sign_in
from tests.console.events_helpers import camera, site
from tests.functions.conftest import FIXTURE_START

pytestmark = pytest.mark.slow


def test_event_page_timeline_of_detections_and_zone_changes(new_page, console_url, fenv):
    creds = fenv.provision()
    t = creds["tenant_id"]
    site(t, "yard", "Yard", "Asia/Tokyo")
    camera(t, "lobby", name="Gate camera", site_id="yard")
    at = lambda s: (FIXTURE_START + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    changes = [("driveway", "enter", 0.4), ("front-door", "enter", 1.2), ("driveway", "exit", 1.6),
               ("front-door", "exit", 1.9)]
    ev = fenv.ingested_event(creds, zones=["driveway", "front-door"], zone_events=[
        {"zone": z, "track_id": 12, "label": "person", "kind": k, "time": at(s)} for z, k, s in changes])
    eid = ev["event_id"]

    page = new_page(bypass_csp=True)
    sign_in(page, console_url, t, "op@example.com", role="operator")
    page.get_by_role("link", name="Events", exact=True).click()
    page.wait_for_url(f"{console_url}/events")
    assert axe_violations(page) == []
    screenshots(page, "p7-events")

    page.locator(f'.event-title a[href="/events/{eid}"]').click()
    page.wait_for_url(f"{console_url}/events/{eid}")
    timeline = page.locator("#timeline")
    assert page.get_by_role("heading", name="Detections and zones").is_visible()
    rows = timeline.locator("tbody tr")
    assert rows.count() == 5
    whats = [rows.nth(i).locator("td").nth(2).inner_text().strip() for i in range(5)]
    assert whats == ["Entered zone driveway", "person detected", "Entered zone front-door", "Left zone driveway",
                     "Left zone front-door"], whats
    first = (FIXTURE_START + dt.timedelta(seconds=0.4)).astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert rows.first.locator("td").first.inner_text().strip() == f"{first:%Y-%m-%d %H:%M:%S} JST"
    assert axe_violations(page) == []
    timeline.scroll_into_view_if_needed()
    shots = screenshots(page, "p7-event-timeline")
    assert shots
    page.set_viewport_size({"width": 390, "height": 844})  # on a phone: one card per row, nothing cut off
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert rows.nth(2).locator("td").nth(2).is_visible()
