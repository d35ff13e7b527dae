"""An admin's journey in Chromium through devices, a device (a command sent, its result appearing by htmx
polling), sites (one created) and a camera: a zone drawn by clicking 4 points on the latest snapshot, one point
dragged, ticked as an alert zone, a mask drawn with 3 clicks (closed on its first point), saved, and handed to
the device by its next heartbeat. axe-core on every page; screenshots at desktop
and phone widths."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.browser.conftest import axe_violations, screenshots, sign_in
from tests.functions.conftest import edge  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _edge_auth(creds: dict) -> dict:
    return {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"]}


def test_admin_draws_a_zone_that_reaches_the_device(new_page, console_url, fenv, edge):  # noqa: F811
    from vigint.tenant_api.cameras import cameras_col

    creds = fenv.provision(f"t-{uuid.uuid4().hex[:10]}", recipients=["ops@example.com"])
    tenant_id = creds["tenant_id"]
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    cameras_col(tenant_id).document("lobby").set({"device_id": "nuc-1", "name": "Lobby", "enabled": True,
                                                  "zones": [], "created_at": now, "updated_at": now})
    fenv.ingested_event(creds, camera_id="lobby")
    beat = edge.post("/v1/heartbeat", headers=_edge_auth(creds),
                     json={"version": "0.7.3", "spool": {"items": 2}, "cameras": {"lobby": {"fps": 9.8}}})
    assert beat.status_code == 200

    page = new_page(bypass_csp=True)
    sign_in(page, console_url, tenant_id, "admin@example.com", role="admin")

    page.get_by_role("link", name="Devices").click()
    page.wait_for_url(console_url + "/devices")
    assert page.get_by_role("cell", name="0.7.3").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "devices")

    page.get_by_role("link", name="nuc-1").first.click()
    page.wait_for_url(console_url + "/devices/nuc-1")
    page.get_by_role("button", name="Send the command").click()  # report_status is preselected
    page.locator(".cmd-pending").wait_for()
    command = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["commands"][0]
    res = edge.post(f"/v1/commands/{command['command_id']}/result", headers=_edge_auth(creds),
                    json={"status": "done", "detail": "status report from the box",
                          "result": {"versions": {"vigint_edge": "0.7.3"}}})
    assert res.status_code == 200
    page.get_by_text("status report from the box").wait_for(timeout=10_000)  # htmx polling brought it
    assert page.locator(".cmd-done").count() == 1
    assert axe_violations(page) == []
    screenshots(page, "device")

    page.goto(console_url + "/settings/sites")
    new_site = page.get_by_role("region", name="New site")
    new_site.get_by_label("Name", exact=True).fill("Head office")
    new_site.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Create the site").click()
    page.get_by_role("heading", name="Head office").wait_for()
    page.get_by_label("Device", exact=True).select_option("nuc-1")
    page.locator("#assign-device-site").select_option("head-office")
    page.get_by_role("button", name="Move the device").click()
    page.wait_for_url(console_url + "/settings/sites")
    assert page.locator(".site-card").filter(has_text="Head office").get_by_role("link", name="nuc-1").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "sites")

    page.goto(console_url + "/cameras/lobby")
    img = page.locator("#zone-snapshot")
    assert img.evaluate("i => i.tagName") == "IMG"
    page.wait_for_function("() => document.getElementById('zone-snapshot').naturalWidth > 0")
    assert axe_violations(page) == []
    page.get_by_role("button", name="New zone").click()
    page.locator("#zone-overlay").evaluate("e => e.scrollIntoView({block: 'start'})")
    box = page.locator("#zone-overlay").bounding_box()
    assert box["y"] > -2 and box["y"] + box["height"] <= 902, box  # every click lands inside the viewport
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
    for fx, fy in ((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)):
        page.mouse.click(*at(fx, fy))
    page.get_by_role("button", name="Close polygon").click()
    assert page.locator(".zone-handle").count() == 4
    # drag the third point from (0.8, 0.8) to (0.7, 0.9)
    page.mouse.move(*at(0.8, 0.8))
    page.mouse.down()
    page.mouse.move(*at(0.75, 0.85), steps=3)
    page.mouse.move(*at(0.7, 0.9), steps=3)
    page.mouse.up()
    page.get_by_label("Zone name").fill("front-door")
    page.get_by_label("Zone labels").fill("person")
    assert page.locator("#alert-zones-note").is_visible() and page.locator("#masks-note").is_visible()
    page.get_by_label("Alert zone (alerts need an alert label inside)").check()
    assert not page.locator("#alert-zones-note").is_visible()
    drawn = json.loads(page.locator("#zones-field").input_value())
    assert [z["name"] for z in drawn] == ["front-door"] and len(drawn[0]["points"]) == 4
    assert json.loads(page.locator("#alert-zones-field").input_value()) == ["front-door"]
    # a mask along the top of the picture: 3 clicks, then a click on its first point closes it
    page.get_by_role("button", name="New mask").click()
    page.locator("#zone-overlay").evaluate("e => e.scrollIntoView({block: 'start'})")  # ticking the box scrolled
    box = page.locator("#zone-overlay").bounding_box()
    for fx, fy in ((0.05, 0.05), (0.95, 0.05), (0.5, 0.15)):
        page.mouse.click(*at(fx, fy))
    page.mouse.click(*at(0.05, 0.05))
    assert not page.get_by_role("button", name="Close polygon").is_enabled()
    assert page.locator(".mask-shape").count() == 1 and page.locator(".zone-shape").count() == 1
    assert page.get_by_role("button", name="Delete mask").is_visible()
    masks = json.loads(page.locator("#masks-field").input_value())
    assert len(masks) == 1 and len(masks[0]) == 3 and all(p[1] < 0.2 for p in masks[0]), masks
    assert axe_violations(page) == []
    screenshots(page, "camera-drawing")
    page.get_by_role("button", name="Save the camera").click()
    page.get_by_text("Saved.").wait_for()
    assert page.locator(".mask-shape").count() == 1, "the saved mask is drawn again"
    assert axe_violations(page) == []
    screenshots(page, "camera")

    cams = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"]
    zone = cams[0]["zones"][0]
    assert (zone["name"], zone["labels"]) == ("front-door", ["person"])
    assert cams[0]["alert_zones"] == ["front-door"]
    want_mask = [(0.05, 0.05), (0.95, 0.05), (0.5, 0.15)]
    assert len(cams[0]["masks"]) == 1 and all(abs(p[0] - w[0]) < 0.01 and abs(p[1] - w[1]) < 0.01
                                              for p, w in zip(cams[0]["masks"][0], want_mask)), cams[0]["masks"]
    want = [(0.2, 0.2), (0.8, 0.2), (0.7, 0.9), (0.2, 0.8)]
    assert all(abs(p[0] - w[0]) < 0.01 and abs(p[1] - w[1]) < 0.01 for p, w in zip(zone["points"], want)), zone
    # the saved zone is drawn again after a reload, and editable as numbers from the keyboard
    page.reload()
    page.get_by_text("Points as numbers").click()
    x3 = page.get_by_label("Point 3 x")
    assert abs(float(x3.input_value()) - 0.7) < 0.01
    x3.fill("0.65")
    page.get_by_role("button", name="Save the camera").click()
    page.get_by_text("Saved.").wait_for()
    cams = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"]
    assert cams[0]["zones"][0]["points"][2][0] == 0.65
