"""Devices pages of the console on the real ``console`` entry point and the emulators: the list and the detail
from a real heartbeat, enrollment codes redeemed at the real ``edge_api``, key rotation and revocation (the
device's old/new secret tried against ``edge_api``), commands queued, handed over in a heartbeat, their result
posted by the device and shown (htmx polling while one waits), role checks, tenant isolation, escaping."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.console.conftest import csrf_of, sign_in
from tests.functions.conftest import edge  # noqa: F401  (fixture)


def _edge_auth(creds: dict) -> dict:
    return {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"]}


def _heartbeat(edge, creds, **body):  # noqa: F811
    return edge.post("/v1/heartbeat", headers=_edge_auth(creds), json=body)


def _audit(tenant_id: str, action: str) -> list[dict]:
    from vigint import audit

    return [e for e in audit.entries(tenant_id, limit=200) if e["action"] == action]


def _add_camera(tenant_id: str, camera_id: str, device_id: str = "nuc-1", **fields) -> None:
    import datetime as dt

    from vigint.tenant_api.cameras import cameras_col

    now = dt.datetime.now(dt.timezone.utc)
    cameras_col(tenant_id).document(camera_id).set({"device_id": device_id, "name": camera_id, "enabled": True,
                                                    "zones": [], "created_at": now, "updated_at": now, **fields})


def _post(client, path: str, page_html: str, **data):
    return client.post(path, data={"csrf_token": csrf_of(page_html), **data})


def test_list_and_detail_show_what_the_device_reported(client, tenant, edge):  # noqa: F811
    from vigint.console import sites

    _add_camera(tenant.tenant_id, "lobby", name="Lobby door")
    sites.put_site(tenant.tenant_id, "hq", name="Head office", time_zone="Europe/Paris")
    from vigint import pipeline

    pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1").update({"site_id": "hq"})
    r = _heartbeat(edge, tenant.creds, version="0.7.3", spool={"items": 4, "bytes": 1200},
                   cameras={"lobby": {"fps": 9.5, "connected": True}, "yard": {"fps": 5.0}})
    assert r.status_code == 200, r.get_json()
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/devices")
    assert page.status_code == 200
    row = re.search(r"<tr>\s*<th scope=\"row\"[^>]*><a href=\"/devices/nuc-1\">.*?</tr>", page.text, re.S).group(0)
    assert "health-online" in row and "0.7.3" in row and "4 item(s)" in row and "Head office" in row
    assert 'href="/cameras/lobby"' in row and "Lobby door" in row
    assert re.search(r"\d+ s ago", row)

    detail = client.get("/devices/nuc-1")
    assert detail.status_code == 200
    assert "Head office" in detail.text and "Europe/Paris" in detail.text and "9.5 fps" in detail.text
    assert "items 4" in detail.text and "bytes 1200" in detail.text
    # a camera the device reports but the cloud does not configure can be configured from here
    assert 'name="camera_id" value="yard"' in detail.text
    made = _post(client, "/devices/nuc-1/cameras", detail.text, camera_id="yard")
    assert made.status_code == 303 and made.headers["Location"] == "/cameras/yard"
    assert client.get("/cameras/yard").status_code == 200
    assert [e["target"]["id"] for e in _audit(tenant.tenant_id, "camera.create")] == ["yard"]
    assert client.get("/devices/nuc-9").status_code == 404


def test_enrollment_code_is_shown_once_and_enrolls_the_box(client, tenant, edge):  # noqa: F811
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/devices")
    r = _post(client, "/devices/enroll", page.text, device_id="nuc-2", name="Back room", ttl_minutes="30")
    assert r.status_code == 200
    code = re.search(r'<p class="code" role="status"><code>([^<]+)</code>', r.text).group(1)
    enrolled = edge.post("/v1/enroll", json={"code": code})
    assert enrolled.status_code == 200, enrolled.get_json()
    creds = enrolled.get_json()
    assert creds["device_id"] == "nuc-2" and creds["tenant_id"] == tenant.tenant_id
    assert edge.post("/v1/enroll", json={"code": code}).status_code != 200  # one use
    assert code not in client.get("/devices").text  # shown once
    entries = _audit(tenant.tenant_id, "device.enroll_code")
    assert len(entries) == 1 and entries[0]["target"]["id"] == "nuc-2"
    assert entries[0]["actor"]["kind"] == "user" and entries[0]["actor"]["name"] == "admin@example.com"
    assert code not in str(entries[0])
    # an id in use, a bad id and a bad lifetime come back as the form with the reason
    again = _post(client, "/devices/enroll", page.text, device_id="nuc-1", name="", ttl_minutes="15")
    assert again.status_code == 409 and "already exists" in again.text
    bad = _post(client, "/devices/enroll", page.text, device_id="Bad Id!", name="", ttl_minutes="15")
    assert bad.status_code == 400 and "device_id" in bad.text and 'value="Bad Id!"' in bad.text
    long = _post(client, "/devices/enroll", page.text, device_id="nuc-3", name="", ttl_minutes="100000")
    assert long.status_code == 400 and "ttl_minutes" in long.text
    assert len(_audit(tenant.tenant_id, "device.enroll_code")) == 1


def test_rotate_key_then_revoke(client, tenant, edge):  # noqa: F811
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/devices/nuc-1")
    assert _heartbeat(edge, tenant.creds).status_code == 200
    r = _post(client, "/devices/nuc-1/rotate-key", page.text)
    assert r.status_code == 200
    secret = re.search(r'<p class="code" role="status"><code>([^<]+)</code>', r.text).group(1)
    assert "key version 2" in r.text
    assert _heartbeat(edge, tenant.creds).status_code == 401  # the old secret stops working
    new = {**tenant.creds, "secret": secret, "key_version": 2}
    assert _heartbeat(edge, new).status_code == 200
    assert secret not in client.get("/devices/nuc-1").text
    rot = _audit(tenant.tenant_id, "device.rotate_key")
    assert len(rot) == 1 and rot[0]["details"] == {"key_version": 2} and secret not in str(rot[0])

    r = _post(client, "/devices/nuc-1/revoke", page.text)
    assert r.status_code == 303 and r.headers["Location"] == "/devices/nuc-1"
    assert _heartbeat(edge, new).status_code in (401, 403)
    after = client.get("/devices/nuc-1")
    assert "health-revoked" in after.text and "takes no commands" in after.text
    assert "/rotate-key" not in after.text
    assert _post(client, "/devices/nuc-1/rotate-key", page.text).status_code == 409
    assert _post(client, "/devices/nuc-1/commands", page.text, type="restart").status_code == 409
    _post(client, "/devices/nuc-1/revoke", page.text)  # again: nothing more happens
    assert len(_audit(tenant.tenant_id, "device.revoke")) == 1


def test_command_is_queued_delivered_and_its_result_shown(client, tenant, edge):  # noqa: F811
    _add_camera(tenant.tenant_id, "lobby")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/devices/nuc-1")
    assert 'name="type" value="request_clip"' in page.text and 'name="type" value="restart"' in page.text
    assert "No commands sent yet" in page.text and "hx-trigger" not in page.text
    r = _post(client, "/devices/nuc-1/commands", page.text, type="report_status")
    assert r.status_code == 303
    detail = client.get("/devices/nuc-1")
    assert "cmd-pending" in detail.text and 'hx-trigger="every 3s"' in detail.text
    assert 'hx-get="/devices/nuc-1/commands"' in detail.text
    entries = _audit(tenant.tenant_id, "device.command")
    assert len(entries) == 1 and entries[0]["details"]["type"] == "report_status"
    command_id = entries[0]["details"]["command_id"]

    beat = _heartbeat(edge, tenant.creds)
    assert [c["command_id"] for c in beat.get_json()["commands"]] == [command_id]
    frag = client.get("/devices/nuc-1/commands", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and "cmd-delivered" in frag.text and "hx-trigger" in frag.text
    assert "<html" not in frag.text  # a fragment
    report = {"uptime_s": 12.5, "versions": {"vigint_edge": "0.7.3", "openvino": "2025.1"}}
    res = edge.post(f"/v1/commands/{command_id}/result", headers=_edge_auth(tenant.creds),
                    json={"status": "done", "detail": "status report", "result": report})
    assert res.status_code == 200, res.get_json()
    frag = client.get("/devices/nuc-1/commands", headers={"HX-Request": "true"})
    assert "cmd-done" in frag.text and "status report" in frag.text and "hx-trigger" not in frag.text
    assert "&#34;uptime_s&#34;: 12.5" in frag.text or '"uptime_s": 12.5' in frag.text
    assert "openvino 2025.1" in client.get("/devices/nuc-1").text

    # request_clip: parameters checked by the tenant API, refused ones shown on the form
    bad = _post(client, "/devices/nuc-1/commands", page.text, type="request_clip", camera_id="lobby",
                start="2030-01-01T10:00", end="2030-01-01T09:00")
    assert bad.status_code == 400 and "end: must be after start" in bad.text
    garbled = _post(client, "/devices/nuc-1/commands", page.text, type="request_clip", camera_id="lobby",
                    start="yesterday", end="")
    assert garbled.status_code == 400 and "not a date and time" in garbled.text
    unknown = _post(client, "/devices/nuc-1/commands", page.text, type="format_disk")
    assert unknown.status_code == 400 and "type" in unknown.text
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    start, end = now - dt.timedelta(minutes=10), now - dt.timedelta(minutes=9)
    ok = _post(client, "/devices/nuc-1/commands", page.text, type="request_clip", camera_id="lobby",
               start=start.strftime("%Y-%m-%dT%H:%M"), end=end.strftime("%Y-%m-%dT%H:%M"))
    assert ok.status_code == 303
    clip = _heartbeat(edge, tenant.creds).get_json()["commands"]
    assert [(c["type"], c["params"]["camera_id"], c["params"]["start"][:16]) for c in clip] == [
        ("request_clip", "lobby", start.strftime("%Y-%m-%dT%H:%M"))]
    assert len(_audit(tenant.tenant_id, "device.command")) == 2


def test_clip_times_are_the_sites_local_time(client, tenant, edge):  # noqa: F811
    import datetime as dt
    import zoneinfo

    from vigint import pipeline
    from vigint.console import sites

    _add_camera(tenant.tenant_id, "lobby")
    sites.put_site(tenant.tenant_id, "ny", name="New York", time_zone="America/New_York")
    pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1").update({"site_id": "ny"})
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    page = client.get("/devices/nuc-1")
    assert "times in America/New_York" in page.text
    zone = zoneinfo.ZoneInfo("America/New_York")
    now = dt.datetime.now(zone).replace(second=0, microsecond=0, tzinfo=None)
    start = now - dt.timedelta(minutes=30)
    ok = _post(client, "/devices/nuc-1/commands", page.text, type="request_clip", camera_id="lobby",
               start=start.strftime("%Y-%m-%dT%H:%M"), end=(start + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M"))
    assert ok.status_code == 303
    got = _heartbeat(edge, tenant.creds).get_json()["commands"][0]["params"]["start"]
    want = start.replace(tzinfo=zone).astimezone(dt.timezone.utc)
    assert dt.datetime.fromisoformat(got.replace("Z", "+00:00")) == want


@pytest.mark.parametrize("role,site_ids", [("viewer", None), ("operator", None), ("admin", ["hq"])])
def test_devices_need_manage(client, tenant, role, site_ids):
    sign_in(client, tenant.tenant_id, f"{role}@example.com", role=role, site_ids=site_ids)
    home = client.get("/")
    assert 'href="/devices"' not in home.text
    for path in ("/devices", "/devices/nuc-1", "/devices/nuc-1/commands"):
        assert client.get(path).status_code == 403, path
    for path, data in (("/devices/enroll", {"device_id": "nuc-5"}), ("/devices/nuc-1/revoke", {}),
                       ("/devices/nuc-1/rotate-key", {}), ("/devices/nuc-1/commands", {"type": "restart"}),
                       ("/devices/nuc-1/cameras", {"camera_id": "yard"})):
        r = _post(client, path, home.text, **data)
        assert r.status_code == 403, path
    from vigint import pipeline

    dev = pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1").get().to_dict()
    assert dev["status"] == "active" and int(dev.get("key_version") or 1) == 1
    assert not list(pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1")
                    .collection("commands").stream())


def test_another_tenants_device_is_a_404(client, tenant, fenv):
    other = fenv.provision(f"t-{uuid.uuid4().hex[:10]}", device_id="their-box")
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    missing = client.get("/devices/no-such-box")
    theirs = client.get("/devices/their-box")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text == missing.text
    home = client.get("/")
    for path in ("/devices/their-box/revoke", "/devices/their-box/rotate-key", "/devices/their-box/commands"):
        assert _post(client, path, home.text, type="restart").status_code == 404, path
    assert client.get("/devices/__x__").status_code == 404
    from vigint import pipeline

    dev = pipeline.tenant_ref(other["tenant_id"]).collection("devices").document("their-box").get().to_dict()
    assert dev["status"] == "active"
    assert "their-box" not in client.get("/devices").text


def test_device_and_camera_names_are_escaped(client, tenant, edge):  # noqa: F811
    from vigint import pipeline

    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    pipeline.tenant_ref(tenant.tenant_id).collection("devices").document("nuc-1").update({"name": evil})
    _add_camera(tenant.tenant_id, "lobby", name=evil)
    _heartbeat(edge, tenant.creds, version='<b>1</b>', spool={"<i>k</i>": "<u>v</u>"})
    sign_in(client, tenant.tenant_id, "admin@example.com", role="admin")
    for path in ("/devices", "/devices/nuc-1"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text, path
        assert "<b>1</b>" not in page.text and "<u>v</u>" not in page.text
