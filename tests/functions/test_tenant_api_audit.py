"""Actions taken with API keys through the tenant API are in the tenant's audit log as console actions are
(issue 11: every settings change, acknowledgement, command and clip view): one entry per successful call, the
key as actor, never a value of the body; refused calls and plain reads write none."""

from __future__ import annotations

import datetime as dt

from tests.functions.test_links import _audit
from tests.functions.test_tenant_api import _store_event, _tenant


def test_api_key_actions_are_audited(fenv, tapi):
    a = _tenant(fenv)
    t, admin = a["tenant_id"], a["admin"]
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    ev = _store_event(fenv, a["creds"], start, alerted=True)
    calls = [
        ("patch", "/v1/tenant", {"alert": {"threshold": 2, "recipients": ["x@example.com"]}}, 200),
        ("post", "/v1/cameras", {"camera_id": "gate", "device_id": "nuc-1", "name": "Gate"}, 201),
        ("patch", "/v1/cameras/gate", {"name": "Front gate"}, 200),
        ("post", "/v1/devices/nuc-1/commands", {"type": "report_status"}, 201),
        ("get", f"/v1/events/{ev}", None, 200),
        ("post", f"/v1/alerts/{ev}/ack", None, 200),
        ("post", "/v1/api-keys", {"name": "Robot", "role": "viewer"}, 201),
    ]
    for method, path, body, status in calls:
        r = getattr(tapi, method)(path, headers=admin, json=body) if body is not None else \
            getattr(tapi, method)(path, headers=admin)
        assert r.status_code == status, (path, r.get_json())
    secret = r.get_json()["key"]
    # refused and read-only calls write nothing
    assert tapi.patch("/v1/tenant", headers=a["viewer"], json={"name": "x"}).status_code == 403
    assert tapi.patch("/v1/cameras/gate", headers=admin, json={"min_score": 7}).status_code == 400
    assert tapi.get("/v1/events", headers=admin).status_code == 200

    entries = [e for e in _audit(t) if e["actor"]["kind"] == "api_key"]
    got = [(e["action"], e["target"]["kind"], e["target"]["id"]) for e in entries]
    assert got == [("settings.update", "tenant", t), ("camera.create", "camera", "gate"),
                   ("camera.update", "camera", "gate"), ("device.command", "device", "nuc-1"),
                   ("event.view", "event", ev), ("event.acknowledge", "event", ev),
                   ("apikey.create", "tenant", t)]
    assert all(e["actor"] == {"kind": "api_key", "id": a["admin_key_id"], "name": "Alice Admin"} for e in entries)
    assert entries[0]["details"] == {"fields": "alert"}
    assert entries[1]["details"]["fields"] == "camera_id,device_id,name"
    assert secret not in repr(_audit(t)) and "x@example.com" not in repr(_audit(t))
