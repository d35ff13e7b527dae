"""Camera settings and sites in the console on the real ``console`` entry point and the emulators: zones saved
from the form and handed to the device by its next real heartbeat, bad zones refused with the reason, the latest
snapshot through a signed URL (or the grey box), sites created, renamed and assigned and what a site-limited user
then sees, roles, tenant isolation, escaping."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.console.conftest import csrf_of, sign_in
from tests.console.test_devices import _add_camera, _audit, _heartbeat, _post
from tests.functions.conftest import edge  # noqa: F401  (fixture)

SQUARE = [[0.1, 0.2], [0.6, 0.2], [0.6, 0.9], [0.1, 0.9]]


def _zone(name="door", points=SQUARE, **kw):
    return {"name": name, "points": points, "labels": [], "enter_s": 0, "exit_s": 0, "loiter_s": 0, **kw}


def _form(page_html: str, **over) -> dict:
    """The camera form's fields as the page filled them, with ``over`` replacing some."""
    def value(name):
        m = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page_html) or \
            re.search(rf'value="([^"]*)"[^>]*name="{name}"', page_html)
        return m.group(1) if m else ""
    import html

    data = {k: html.unescape(value(k)) for k in ("name", "labels", "alert_labels", "min_score", "zones", "masks",
                                                 "alert_zones")}
    if re.search(r'name="enabled"[^>]*checked', page_html):
        data["enabled"] = "on"
    data.update(over)
    return {"csrf_token": csrf_of(page_html), **{k: v for k, v in data.items() if v is not None}}


def test_zones_saved_reach_the_device_on_its_next_heartbeat(client, tenant, edge):  # noqa: F811
    _add_camera(tenant.tenant_id, "lobby", name="Lobby")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/cameras/lobby")
    assert page.status_code == 200 and 'id="zone-editor"' in page.text and "zones.js" in page.text
    assert 'class="no-snapshot"' in page.text and "No snapshot yet" in page.text
    zones = [_zone("door", labels=["person"], enter_s=1.5, exit_s=2, loiter_s=30),
             _zone("drive", [[0.7, 0.1], [0.95, 0.1], [0.9, 0.5]])]
    r = client.post("/cameras/lobby", data=_form(page.text, name="Lobby door", labels="person, car",
                                                 alert_labels="person", min_score="0.6", zones=json.dumps(zones)))
    assert r.status_code == 303 and r.headers["Location"] == "/cameras/lobby?saved=1"
    saved = client.get(r.headers["Location"])
    assert "Saved." in saved.text and 'value="Lobby door"' in saved.text and 'value="person, car"' in saved.text
    assert json.loads(_form(saved.text)["zones"]) == zones

    beat = _heartbeat(edge, tenant.creds)
    assert beat.status_code == 200
    cams = beat.get_json()["config"]["cameras"]
    assert [c["camera_id"] for c in cams] == ["lobby"]
    cam = cams[0]
    assert (cam["name"], cam["labels"], cam["alert_labels"], cam["min_score"]) == (
        "Lobby door", ["person", "car"], ["person"], 0.6)
    assert cam["zones"] == zones
    entries = _audit(tenant.tenant_id, "camera.update")
    assert len(entries) == 1 and entries[0]["target"]["id"] == "lobby"
    assert entries[0]["details"] == {"changed": "alert_labels,labels,min_score,name,zones", "zones": 2, "masks": None}
    assert (cam["masks"], cam["alert_zones"]) == (None, None), "untouched: the device keeps its own"

    # emptied fields fall back to the device's defaults; deleting every zone is saved as no zones
    r = client.post("/cameras/lobby", data=_form(saved.text, labels="", alert_labels="", min_score="", zones="[]"))
    assert r.status_code == 303
    cam = _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]
    assert (cam["labels"], cam["alert_labels"], cam["min_score"], cam["zones"]) == (None, None, None, [])
    assert cam["enabled"] is True
    r = client.post("/cameras/lobby", data={k: v for k, v in _form(saved.text).items() if k != "enabled"})
    assert r.status_code == 303
    assert _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]["enabled"] is False


STREET = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.1]]


def test_masks_and_alert_zones_saved_reach_the_device(client, tenant, edge):  # noqa: F811
    _add_camera(tenant.tenant_id, "lobby", name="Lobby")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/cameras/lobby")
    assert 'id="mask-new"' in page.text and 'name="masks"' in page.text and 'name="alert_zones"' in page.text
    assert 'id="masks-note">' in page.text and 'id="alert-zones-note">' in page.text  # null: shown, not hidden
    form = _form(page.text)
    assert (form["masks"], form["alert_zones"]) == ("null", "null")
    zones = [_zone("door"), _zone("drive", [[0.7, 0.1], [0.95, 0.1], [0.9, 0.5]])]
    r = client.post("/cameras/lobby", data=_form(page.text, zones=json.dumps(zones), masks=json.dumps([STREET]),
                                                 alert_zones=json.dumps(["drive"])))
    assert r.status_code == 303, r.text
    saved = client.get(r.headers["Location"])
    assert json.loads(_form(saved.text)["masks"]) == [STREET]
    assert json.loads(_form(saved.text)["alert_zones"]) == ["drive"]
    assert 'id="masks-note" hidden' in saved.text and 'id="alert-zones-note" hidden' in saved.text
    cam = _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == ([STREET], ["drive"])
    entries = _audit(tenant.tenant_id, "camera.update")
    assert entries[-1]["details"] == {"changed": "alert_zones,masks,zones", "zones": 2, "masks": 1}

    # refused, with the reason on the form and what was sent kept; nothing saved
    for over, reason in (({"masks": json.dumps([STREET[:2]])}, "mask 1: List should have at least 3 items"),
                         ({"masks": json.dumps([[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]])},
                          "mask 1 point 2: Input should be less than or equal to 1"),
                         ({"masks": "[[["}, "Masks: not valid JSON"),
                         ({"alert_zones": json.dumps(["garage"])}, "Alert zones: Value error, names zones that are "
                                                                   "not defined: garage"),
                         ({"alert_zones": json.dumps(["<b>x"])}, "Alert zones: String should match pattern")):
        r = client.post("/cameras/lobby", data=_form(saved.text, name="Renamed", **over))
        assert r.status_code == 400, over
        error = re.search(r'<p class="error" role="alert" id="form-error">([^<]*)</p>', r.text).group(1)
        assert reason in error, (reason, error)
        assert 'value="Renamed"' in r.text and "<b>x" not in r.text
    assert _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]["masks"] == [STREET]

    # the browser deleted every mask and unticked every zone: [] (no masks; alerts anywhere), not null
    r = client.post("/cameras/lobby", data=_form(saved.text, masks="[]", alert_zones="[]"))
    assert r.status_code == 303
    cam = _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == ([], [])
    # a form without the fields (an older page) leaves them as stored; a viewer cannot change them
    r = client.post("/cameras/lobby", data={k: v for k, v in _form(saved.text, masks=json.dumps([STREET])).items()
                                            if k not in ("masks", "alert_zones")})
    assert r.status_code == 303
    cam = _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == ([], [])


BAD_ZONES = [
    ([_zone(points=SQUARE[:2])], "zone 1 (door) points: List should have at least 3 items"),
    ([_zone(points=[[0.1, 0.2], [1.4, 0.2], [0.5, 0.9]])], "zone 1 (door) points.1.0: Input should be less than"),
    ([_zone("Front Door")], "zone 1 (Front Door) name: String should match pattern"),
    ([_zone("door"), _zone("door")], "zone names must be unique per camera"),
    ([{**_zone(), "colour": "red"}], "zone 1 (door) colour: Extra inputs are not permitted"),
    ({"door": SQUARE}, "Zones: Input should be a valid list"),
    ("not json", "Zones: not valid JSON"),
]


def test_bad_zones_are_refused_with_the_reason(client, tenant, edge):  # noqa: F811
    _add_camera(tenant.tenant_id, "lobby", zones=[{"name": "old", "points": [{"x": 0, "y": 0}, {"x": 1, "y": 0},
                                                                                 {"x": 1, "y": 1}]}])
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/cameras/lobby")
    for zones, reason in BAD_ZONES:
        sent = zones if isinstance(zones, str) else json.dumps(zones)
        r = client.post("/cameras/lobby", data=_form(page.text, name="Renamed", zones=sent))
        assert r.status_code == 400, reason
        error = re.search(r'<p class="error" role="alert" id="form-error">([^<]*)</p>', r.text).group(1)
        assert reason in error.replace("&#39;", "'"), (reason, error)
        assert 'value="Renamed"' in r.text  # what was typed comes back
    cam = _heartbeat(edge, tenant.creds).get_json()["config"]["cameras"][0]
    assert cam["name"] == "lobby" and [z["name"] for z in cam["zones"]] == ["old"]
    assert _audit(tenant.tenant_id, "camera.update") == []


def test_bad_settings_are_refused(client, tenant):
    _add_camera(tenant.tenant_id, "lobby")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/cameras/lobby")
    for over, reason in (({"min_score": "1.5"}, "Minimum score: Input should be less than 1"),
                         ({"min_score": "high"}, "Minimum score: a number"),
                         ({"labels": "person, <b>"}, "Labels"),
                         ({"name": "x" * 201}, "Name: String should have at most 200 characters")):
        r = client.post("/cameras/lobby", data=_form(page.text, **over))
        assert r.status_code == 400 and reason in r.text, over
        assert "<b>" not in r.text.split('id="form-error"')[1].split("</p>")[0]


def test_latest_snapshot_is_shown_through_a_signed_url(client, tenant, fenv):
    _add_camera(tenant.tenant_id, "lobby")
    older = fenv.ingested_event(tenant.creds, camera_id="lobby")
    import datetime as dt

    from tests.functions.conftest import FIXTURE_START

    newer = fenv.ingested_event(tenant.creds, camera_id="lobby", start=FIXTURE_START + dt.timedelta(minutes=5))
    sign_in(client, tenant.tenant_id, "viewer@example.com", role="viewer")
    page = client.get("/cameras/lobby")
    assert page.status_code == 200
    src = re.search(r'<img src="([^"]+)" alt="Latest snapshot of lobby', page.text).group(1)
    import html

    import requests

    url = html.unescape(src)
    assert newer["event_id"] in url and older["event_id"] not in url
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=" in url
    got = requests.get(url, timeout=10)
    assert got.status_code == 200 and got.content == fenv.media["snapshot"]
    # a viewer watches, cannot change
    assert "camera-save" not in page.text and "<fieldset disabled" in page.text
    assert client.post("/cameras/lobby", data=_form(page.text, name="x")).status_code == 403


def test_sites_created_renamed_assigned_and_what_a_limited_user_sees(app, tenant):
    admin, limited = app.test_client(), app.test_client()
    _add_camera(tenant.tenant_id, "lobby", name="Lobby")
    _add_camera(tenant.tenant_id, "street", name="Street")
    sign_in(admin, tenant.tenant_id, "admin@example.com", role="admin")
    page = admin.get("/settings/sites")
    assert page.status_code == 200 and "<option>Europe/Paris</option>" in page.text
    assert "No sites yet" in page.text
    r = _post(admin, "/settings/sites", page.text, name="Dépôt Nord", site_id="", time_zone="Europe/Paris")
    assert r.status_code == 303
    r = _post(admin, "/settings/sites", page.text, name="Annex", site_id="annex", time_zone="")
    assert r.status_code == 303
    dup = _post(admin, "/settings/sites", page.text, name="Again", site_id="annex", time_zone="")
    assert dup.status_code == 409 and "already a site" in dup.text
    badtz = _post(admin, "/settings/sites", page.text, name="Mars", site_id="mars", time_zone="Mars/Olympus")
    assert badtz.status_code == 400 and "time_zone: not an IANA time zone" in badtz.text
    page = admin.get("/settings/sites")
    assert "Dépôt Nord" in page.text and "depot-nord · Europe/Paris" in page.text

    sign_in(limited, tenant.tenant_id, "guard@example.com", role="operator", site_ids=["depot-nord"])
    assert limited.get("/cameras/lobby").status_code == 404  # no site yet: only users of every site see it
    assert "Lobby" not in limited.get("/").text

    assert _post(admin, "/settings/sites/assign/device", page.text, device_id="nuc-1",
                 site_id="depot-nord").status_code == 303
    assert limited.get("/cameras/lobby").status_code == 200
    assert limited.get("/cameras/street").status_code == 200
    # one camera across the road belongs to the annex
    assert _post(admin, "/settings/sites/assign/camera", page.text, camera_id="street",
                 site_id="annex").status_code == 303
    hidden, missing = limited.get("/cameras/street"), limited.get("/cameras/no-such-camera")
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text
    home = limited.get("/")
    assert "Lobby" in home.text and "Street" not in home.text
    # the camera follows its device again
    assert _post(admin, "/settings/sites/assign/camera", page.text, camera_id="street", site_id="").status_code == 303
    assert limited.get("/cameras/street").status_code == 200
    # unknown site or device are refused
    bad = _post(admin, "/settings/sites/assign/device", page.text, device_id="nuc-1", site_id="nowhere")
    assert bad.status_code == 400 and "not a site of this tenant" in bad.text
    bad = _post(admin, "/settings/sites/assign/device", page.text, device_id="nuc-77", site_id="annex")
    assert bad.status_code == 400 and "not a device of this tenant" in bad.text

    r = _post(admin, "/settings/sites/depot-nord", page.text, name="Depot North", time_zone="America/Toronto")
    assert r.status_code == 303
    page = admin.get("/settings/sites")
    assert "Depot North" in page.text and "America/Toronto" in page.text
    assert _post(admin, "/settings/sites/nowhere", page.text, name="X", time_zone="").status_code == 404
    assert [e["target"]["id"] for e in _audit(tenant.tenant_id, "site.create")] == ["annex", "depot-nord"]
    upd = _audit(tenant.tenant_id, "site.update")
    assert len(upd) == 1 and upd[0]["details"]["name_before"] == "Dépôt Nord"
    dev = _audit(tenant.tenant_id, "device.site")
    assert len(dev) == 1 and dev[0]["details"] == {"site_id": "depot-nord", "site_id_before": None}
    assert len(_audit(tenant.tenant_id, "camera.site")) == 2
    # the limited user's device is not theirs to move
    assert limited.get("/settings/sites").status_code == 403


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewer_and_operator_cannot_change_cameras_or_sites(client, tenant, role):
    _add_camera(tenant.tenant_id, "lobby")
    from vigint.console import sites

    sites.put_site(tenant.tenant_id, "hq", name="HQ", time_zone=None)
    sign_in(client, tenant.tenant_id, f"{role}@example.com", role=role)
    page = client.get("/cameras/lobby")
    assert page.status_code == 200
    posts = (("/cameras/lobby", _form(page.text, name="Mine", zones=json.dumps([_zone()]))),
             ("/settings/sites", {"name": "New", "site_id": "new", "csrf_token": csrf_of(page.text)}),
             ("/settings/sites/hq", {"name": "Mine", "csrf_token": csrf_of(page.text)}),
             ("/settings/sites/assign/device", {"device_id": "nuc-1", "site_id": "hq",
                                                "csrf_token": csrf_of(page.text)}),
             ("/settings/sites/assign/camera", {"camera_id": "lobby", "site_id": "hq",
                                                "csrf_token": csrf_of(page.text)}))
    for path, data in posts:
        assert client.post(path, data=data).status_code == 403, path
    assert client.get("/settings/sites").status_code == 403
    from vigint import pipeline

    doc = pipeline.tenant_ref(tenant.tenant_id).collection("cameras").document("lobby").get().to_dict()
    assert doc["name"] == "lobby" and doc["zones"] == [] and "site_id" not in doc
    assert [s.site_id for s in sites.list_sites(tenant.tenant_id)] == ["hq"]


def test_csrf_is_required_on_camera_and_site_forms(client, tenant):
    _add_camera(tenant.tenant_id, "lobby")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/cameras/lobby")
    data = _form(page.text, name="Changed")
    assert client.post("/cameras/lobby", data={**data, "csrf_token": "forged-token-xxxxxxxx"}).status_code == 403
    assert client.post("/cameras/lobby", data=data, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/settings/sites", data={"name": "X"}).status_code == 403


def test_another_tenants_camera_is_a_404(client, tenant, fenv):
    other = fenv.provision(f"t-{uuid.uuid4().hex[:10]}")
    _add_camera(other["tenant_id"], "their-cam")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    theirs, missing = client.get("/cameras/their-cam"), client.get("/cameras/none-here")
    assert theirs.status_code == missing.status_code == 404 and theirs.text == missing.text
    page = client.get("/settings/sites")
    assert client.post("/cameras/their-cam", data=_form(page.text, name="Mine", zones="[]")).status_code == 404
    r = _post(client, "/settings/sites/assign/camera", page.text, camera_id="their-cam", site_id="")
    assert r.status_code == 400
    from vigint import pipeline

    doc = pipeline.tenant_ref(other["tenant_id"]).collection("cameras").document("their-cam").get().to_dict()
    assert doc["name"] == "their-cam" and "site_id" not in doc


def test_camera_and_site_names_are_escaped(client, tenant):
    evil = '"><script>alert(1)</script>'
    _add_camera(tenant.tenant_id, "lobby", name=evil)
    from vigint import pipeline
    from vigint.console import sites

    sites.put_site(tenant.tenant_id, "hq", name=evil, time_zone=None)
    pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1").update({"site_id": "hq"})
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    for path in ("/cameras/lobby", "/settings/sites", "/devices", "/devices/nuc-1"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert(1)" not in page.text, path
        assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    # a zone's fields are JSON in an attribute: quotes are escaped so the value cannot end early
    page = client.get("/cameras/lobby")
    r = client.post("/cameras/lobby", data=_form(page.text, zones=json.dumps([_zone(labels=["a-b"])])))
    assert r.status_code == 303
    page = client.get("/cameras/lobby")
    assert 'value="[{&#34;name&#34;:&#34;door&#34;' in page.text
