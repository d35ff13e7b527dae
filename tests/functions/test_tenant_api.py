"""tenant_api through functions-framework's Flask app, against the Firestore emulator and fake-gcs-server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import requests

UTC = dt.timezone.utc
# Events must be recent for ingest (not older than 7 days, not in the future): three days ago, 06:00 UTC.
T0 = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(hour=6, minute=0, second=0, microsecond=0)


def _z(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _edge_auth(creds: dict) -> dict:
    return {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"]}


def _tenant(fenv, tenant_id: str | None = None, device_id: str = "nuc-1") -> dict:
    """A tenant with one device and an admin and a viewer key."""
    from vigint import provisioning

    creds = fenv.provision(tenant_id=tenant_id, device_id=device_id, recipients=["ops@example.com"])
    t = creds["tenant_id"]
    admin = provisioning.create_api_key(t, "admin", "Alice Admin")
    viewer = provisioning.create_api_key(t, "viewer", "Victor Viewer")
    return {"tenant_id": t, "creds": creds, "admin": _bearer(admin["key"]), "viewer": _bearer(viewer["key"]),
            "admin_key_id": admin["key_id"], "viewer_key_id": viewer["key_id"]}


def _store_event(fenv, creds: dict, start: dt.datetime, *, camera_id: str = "lobby", labels=("person",),
                 zones=(), event_id: str | None = None, threat_level: int | None = None,
                 alerted: bool | None = None, **event_kw) -> str:
    """Ingests a real event (media in fake-gcs) through ``ingest``, then records the analysis/alert
    outcome the later stages would write (those stages have their own tests). ``event_kw``: other
    event fields (``Fenv.event`` overrides, e.g. ``kind``)."""
    from vigint import pipeline

    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    ev = fenv.ingested_event(creds, event_id=event_id, camera_id=camera_id, labels=labels, zones=list(zones),
                             start_time=iso(start), end_time=iso(start + dt.timedelta(seconds=2)), **event_kw)
    update = {}
    if threat_level is not None:
        update["analysis"] = {"status": "ok", "source": "detections", "threat_level": threat_level,
                              "title": f"level {threat_level}", "summary": "test"}
        update["status"] = "analyzed"
    if alerted is not None:
        update["alert"] = {"decided_at": start, "alerted": alerted, "reason": "test"}
    if update:
        pipeline.event_ref(creds["tenant_id"], ev["event_id"]).update(update)
    return ev["event_id"]


# ------------------------------------------------------------------------------------- auth and roles


def test_auth_failures_and_roles(fenv, tapi):
    from vigint import api_keys

    a = _tenant(fenv)
    good = a["admin"]["Authorization"]
    cases = {
        "none": {},
        "not bearer": {"Authorization": good.replace("Bearer", "Basic")},
        "garbage": _bearer("nonsense"),
        "wrong secret": {"Authorization": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")},
        "unknown id": _bearer("vgk_000000000000." + "A" * 43),
    }
    answers = {}
    for name, headers in cases.items():
        r = tapi.get("/v1/tenant", headers=headers)
        answers[name] = (r.status_code, r.get_data(), r.headers.get("WWW-Authenticate"))
    assert len(set(answers.values())) == 1, answers
    assert answers["none"][0] == 401 and json.loads(answers["none"][1])["error"] == "unauthorized"

    assert tapi.get("/v1/tenant", headers=a["viewer"]).status_code == 200
    assert tapi.get("/v1/events", headers=a["viewer"]).status_code == 200
    for method, path, body in [("PATCH", "/v1/tenant", {"name": "x"}),
                               ("POST", "/v1/cameras", {"camera_id": "cam-1", "device_id": "nuc-1"}),
                               ("POST", "/v1/devices/enrollment-codes", {"device_id": "nuc-9"}),
                               ("POST", "/v1/devices/nuc-1/rotate-key", None),
                               ("POST", "/v1/devices/nuc-1/revoke", None),
                               ("POST", "/v1/api-keys", {"name": "Mallory", "role": "admin"}),
                               ("GET", "/v1/api-keys", None)]:
        r = tapi.open(path, method=method, headers=a["viewer"], json=body)
        assert r.status_code == 403, (method, path, r.get_json())
    # The viewer changed nothing.
    assert tapi.get("/v1/tenant", headers=a["admin"]).get_json()["name"] != "x"
    assert tapi.get("/v1/devices/nuc-1", headers=a["admin"]).get_json()["status"] == "active"

    # An admin can create and revoke keys; a revoked key is a 401 like any other.
    r = tapi.post("/v1/api-keys", headers=a["admin"], json={"name": "Carol", "role": "viewer"})
    assert r.status_code == 201
    carol = r.get_json()
    assert carol["key"].startswith("vgk_") and carol["role"] == "viewer"
    assert tapi.get("/v1/tenant", headers=_bearer(carol["key"])).status_code == 200
    listed = tapi.get("/v1/api-keys", headers=a["admin"]).get_json()["api_keys"]
    assert {k["name"] for k in listed} == {"Alice Admin", "Victor Viewer", "Carol"}
    assert all("key" not in k and "key_sha256" not in k for k in listed)
    assert tapi.delete(f"/v1/api-keys/{carol['key_id']}", headers=a["admin"]).get_json()["revoked"] is True
    r = tapi.get("/v1/tenant", headers=_bearer(carol["key"]))
    assert (r.status_code, r.get_data()) == (401, answers["none"][1])
    # Only the hash is stored.
    from vigint import clients

    stored = clients.firestore().collection("api_keys").document(carol["key_id"]).get().to_dict()
    assert carol["key"] not in json.dumps(stored, default=str)
    assert stored["key_sha256"] == api_keys.hash_key(carol["key"])


def test_admin_cli_prints_a_working_key_once(fenv, tapi):
    from infra.local.stack import REPO

    t = fenv.provision()["tenant_id"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    out = subprocess.run([sys.executable, "-m", "vigint.admin", "apikey", "create", "--tenant", t, "--role", "admin",
                          "--name", "First Admin"], env=env, capture_output=True, text=True, cwd=REPO, check=True)
    created = json.loads(out.stdout)
    assert created["role"] == "admin" and created["tenant_id"] == t
    r = tapi.get("/v1/tenant", headers=_bearer(created["key"]))
    assert r.status_code == 200 and r.get_json()["tenant_id"] == t
    bad = subprocess.run([sys.executable, "-m", "vigint.admin", "apikey", "create", "--tenant", "no-such-tenant",
                          "--role", "admin", "--name", "X"], env=env, capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


# --------------------------------------------------------------------------------- tenant isolation


def test_cross_tenant_ids_answer_exactly_like_missing_ones(fenv, tapi):
    a, b = _tenant(fenv), _tenant(fenv)
    assert tapi.post("/v1/cameras", headers=b["admin"],
                     json={"camera_id": "gate", "device_id": "nuc-1"}).status_code == 201
    b_event = _store_event(fenv, b["creds"], T0, camera_id="gate", threat_level=3, alerted=True)
    b_key = b["viewer_key_id"]
    missing_event = "evt_" + "Z" * 26

    def both(method, template, b_id, missing_id, body=None):
        got = []
        for ident in (b_id, missing_id):
            r = tapi.open(template.format(ident), method=method, headers=a["admin"], json=body)
            got.append((r.status_code, r.get_json()))
        assert got[0] == got[1], (method, template, got)
        assert got[0][0] == 404, (method, template, got)

    # Tenant A has its own nuc-1, so device routes use a device only B has.
    from vigint import provisioning

    provisioning.create_device(b["tenant_id"], "b-only", "B only")
    for method, path in [("GET", "/v1/devices/{}"), ("POST", "/v1/devices/{}/revoke"),
                         ("POST", "/v1/devices/{}/rotate-key")]:
        both(method, path, "b-only", "no-such-box")
    both("POST", "/v1/devices/{}/commands", "b-only", "no-such-box", {"type": "restart"})
    for method, path, body in [("GET", "/v1/cameras/{}", None), ("PATCH", "/v1/cameras/{}", {"name": "mine"}),
                               ("DELETE", "/v1/cameras/{}", None)]:
        both(method, path, "gate", "no-such-cam", body)
    for method, path in [("GET", "/v1/events/{}"), ("POST", "/v1/alerts/{}/ack")]:
        both(method, path, b_event, missing_event)
    both("DELETE", "/v1/api-keys/{}", b_key, "0123456789ab")
    # Body references to another tenant's device.
    r1 = tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "c-1", "device_id": "b-only"})
    r2 = tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "c-1", "device_id": "no-such-box"})
    assert (r1.status_code, r1.get_json()) == (r2.status_code, r2.get_json()) == (404, r1.get_json())
    assert r1.get_json()["field"] == "device_id"

    # Lists and aggregates show only A's objects.
    assert [d["device_id"] for d in tapi.get("/v1/devices", headers=a["admin"]).get_json()["devices"]] == ["nuc-1"]
    assert tapi.get("/v1/cameras", headers=a["admin"]).get_json()["cameras"] == []
    assert tapi.get("/v1/events", headers=a["admin"]).get_json()["events"] == []
    assert tapi.get("/v1/alerts", headers=a["admin"]).get_json()["events"] == []
    assert tapi.get("/v1/alerts/unacknowledged-count", headers=a["admin"]).get_json() == {"unacknowledged": 0}
    assert tapi.get("/v1/usage", headers=a["admin"]).get_json()["events"] == 0
    assert tapi.get("/v1/usage", headers=b["admin"]).get_json()["events"] == 1
    counts = tapi.get(f"/v1/analytics/counts?bucket=day&since={_z(T0 - dt.timedelta(days=1))}"
                      f"&until={_z(T0 + dt.timedelta(days=1))}", headers=a["admin"]).get_json()
    assert counts["total"] == 0
    assert [k["name"] for k in tapi.get("/v1/api-keys", headers=a["admin"]).get_json()["api_keys"]] \
        == ["Alice Admin", "Victor Viewer"]
    # There is no way to name another tenant: /v1/tenant is always the key's own.
    assert tapi.get("/v1/tenant", headers=a["admin"]).get_json()["tenant_id"] == a["tenant_id"]
    # B's objects were not touched by any of A's attempts.
    r = tapi.get("/v1/devices/b-only", headers=b["admin"]).get_json()
    assert (r["status"], r["key_version"]) == ("active", 1)
    assert tapi.get("/v1/cameras/gate", headers=b["admin"]).get_json()["name"] == "gate"
    assert tapi.get(f"/v1/events/{b_event}", headers=b["admin"]).get_json()["acknowledged"] is False
    assert tapi.get("/v1/tenant", headers=b["viewer"]).status_code == 200


# ------------------------------------------------------------------------------ settings and errors


def test_tenant_settings_patch_and_field_errors(fenv, tapi):
    a = _tenant(fenv)
    from vigint import alert, pipeline

    r = tapi.patch("/v1/tenant", headers=a["admin"], json={
        "name": "Warehouse", "normal_context": "Forklifts move at night.", "retention_days": 30,
        "timezone": "Europe/Paris", "quiet_hours": {"start": "22:00", "end": "06:30", "timezone": "Europe/Paris"},
        "alert": {"threshold": 2, "recipients": ["a@example.com", "a@example.com", "b@example.com"],
                  "cooldown_seconds": 120, "link_ttl_seconds": 3600}})
    assert r.status_code == 200, r.get_json()
    t = tapi.get("/v1/tenant", headers=a["viewer"]).get_json()
    assert t["name"] == "Warehouse" and t["retention_days"] == 30 and t["normal_context"] == "Forklifts move at night."
    assert t["quiet_hours"] == {"start": "22:00", "end": "06:30", "timezone": "Europe/Paris"}
    assert t["timezone"] == "Europe/Paris"
    assert t["alert"] == {"threshold": 2, "recipients": ["a@example.com", "b@example.com"], "cooldown_seconds": 120,
                          "link_ttl_seconds": 3600}
    # Stored where the alert and retention functions read them.
    doc = pipeline.tenant_ref(a["tenant_id"]).get().to_dict()
    assert pipeline.retention_days(doc) == 30
    assert alert.in_quiet_hours(doc["quiet_hours"], dt.datetime(2026, 1, 15, 23, 0, tzinfo=UTC))  # 00:00 Paris
    assert not alert.in_quiet_hours(doc["quiet_hours"], dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    # Partial patch leaves the rest alone; null removes quiet hours.
    t = tapi.patch("/v1/tenant", headers=a["admin"], json={"quiet_hours": None}).get_json()
    assert t["quiet_hours"] is None and t["alert"]["threshold"] == 2 and t["name"] == "Warehouse"

    bad = {
        "quiet_hours.timezone": {"quiet_hours": {"start": "22:00", "end": "06:00", "timezone": "Mars/Olympus"}},
        "quiet_hours.start": {"quiet_hours": {"start": "25:00", "end": "06:00", "timezone": "UTC"}},
        "timezone": {"timezone": "../../etc/passwd"},
        "alert.threshold": {"alert": {"threshold": 4}},
        "alert.recipients.1": {"alert": {"recipients": ["ok@example.com", "not-an-address"]}},
        "retention_days": {"retention_days": 0},
        "name": {"name": None},
        "tenant_id": {"tenant_id": "other"},
    }
    for field, body in bad.items():
        r = tapi.patch("/v1/tenant", headers=a["admin"], json=body)
        assert r.status_code == 400 and r.get_json()["field"] == field, (field, r.get_json())
    r = tapi.patch("/v1/tenant", headers=a["admin"], data=b"{not json", content_type="application/json")
    assert (r.status_code, r.get_json()["field"]) == (400, "body")
    r = tapi.patch("/v1/tenant", headers=a["admin"], data=b"[1]", content_type="application/json")
    assert (r.status_code, r.get_json()["field"]) == (400, "body")
    r = tapi.patch("/v1/tenant", headers=a["admin"], data=b"x" * (64 * 1024 + 1), content_type="application/json")
    assert r.status_code == 413
    r = tapi.delete("/v1/tenant", headers=a["admin"])
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) == {"GET", "PATCH"}
    assert tapi.get("/v1/nothing", headers=a["admin"]).status_code == 404
    r = tapi.get("/v1/events?colour=red", headers=a["admin"])
    assert (r.status_code, r.get_json()["field"]) == (400, "colour")
    # Nothing of the failed patches landed.
    assert tapi.get("/v1/tenant", headers=a["admin"]).get_json()["alert"]["threshold"] == 2


# ------------------------------------------------------------------------------- events and paging


def test_events_pagination_filters_and_detail(fenv, tapi):
    a = _tenant(fenv)
    creds = a["creds"]
    expected = []
    for i in range(25):
        # Pairs share a start time, so the event id decides their order.
        start = T0 + dt.timedelta(minutes=(i // 2) * 10)
        cam = "lobby" if i % 3 else "yard"
        labels = ("person",) if i % 2 else ("car", "person")
        eid = _store_event(fenv, creds, start, camera_id=cam, labels=labels, zones=("door",) if i % 4 == 0 else (),
                           event_id=f"evt_{i:02d}{'X' * 24}", threat_level=i % 4)
        expected.append((start, eid, cam, labels, i % 4, i % 4 == 0))
    order = [e[1] for e in sorted(expected, key=lambda e: (e[0], e[1]), reverse=True)]

    def pages(query: str, limit: int) -> list[list[dict]]:
        out, cursor = [], None
        for _ in range(30):
            q = f"/v1/events?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
            r = tapi.get(q, headers=a["viewer"])
            assert r.status_code == 200, r.get_json()
            out.append(r.get_json()["events"])
            cursor = r.get_json()["next_cursor"]
            if cursor is None:
                return out
        raise AssertionError("pagination did not end")

    got = pages("", 10)
    assert [len(p) for p in got] == [10, 10, 5]
    assert [e["event_id"] for p in got for e in p] == order  # no duplicates, no gaps, stable order

    lobby = [e[1] for e in sorted(expected, key=lambda e: (e[0], e[1]), reverse=True) if e[2] == "lobby"]
    assert [e["event_id"] for p in pages("&camera_id=lobby", 4) for e in p] == lobby
    cars = [e for p in pages("&label=car", 5) for e in p]
    assert sorted(e["event_id"] for e in cars) == sorted(e[1] for e in expected if "car" in e[3])
    assert len(cars) == 13 and all("car" in e["labels"] for e in cars)
    high = [e for p in pages("&min_threat_level=2", 10) for e in p]
    assert sorted(e["event_id"] for e in high) == sorted(e[1] for e in expected if e[4] >= 2)
    both = [e for p in pages("&label=car&zone=door", 3) for e in p]  # zone applied in memory
    assert sorted(e["event_id"] for e in both) == sorted(e[1] for e in expected if e[5] and "car" in e[3])
    since, until = _z(T0 + dt.timedelta(minutes=30)), (T0 + dt.timedelta(minutes=60)).isoformat()
    window = [e for p in pages(f"&since={since}&until={until.replace('+00:00', '%2B00:00')}", 3) for e in p]
    assert sorted(e["event_id"] for e in window) == sorted(
        e[1] for e in expected if T0 + dt.timedelta(minutes=30) <= e[0] < T0 + dt.timedelta(minutes=60))
    assert len(window) == 6

    for query, field in [("limit=101", "limit"), ("limit=0", "limit"), ("cursor=abc", "cursor"),
                         ("since=2026-11-22T06:00:00", "since"), ("severity=bad", "severity"),
                         ("min_threat_level=9", "min_threat_level"), ("camera_id=UPPER", "camera_id")]:
        r = tapi.get(f"/v1/events?{query}", headers=a["viewer"])
        assert (r.status_code, r.get_json()["field"]) == (400, field), query

    # Detail: analysis and fresh signed URLs that play the real media.
    r = tapi.get(f"/v1/events/{order[0]}", headers=a["viewer"])
    assert r.status_code == 200
    ev = r.get_json()
    assert ev["analysis"]["threat_level"] == ev["threat_level"]
    assert ev["clip"]["object"].startswith(f"tenants/{a['tenant_id']}/devices/nuc-1/events/{order[0]}/")
    expires = dt.datetime.fromisoformat(ev["urls_expire_at"].replace("Z", "+00:00"))
    assert 0 < (expires - dt.datetime.now(UTC)).total_seconds() <= 600
    clip = requests.get(ev["clip_url"], timeout=10)
    assert clip.status_code == 200 and clip.content == fenv.media["clip"]
    snap = requests.get(ev["snapshot_url"], timeout=10)
    assert snap.status_code == 200 and snap.content == fenv.media["snapshot"]
    assert tapi.get("/v1/events/not valid!", headers=a["viewer"]).status_code == 404


def test_alerts_ack_and_unacknowledged_count(fenv, tapi):
    a = _tenant(fenv)
    ids = [_store_event(fenv, a["creds"], T0 + dt.timedelta(minutes=i), threat_level=3, alerted=i < 3)
           for i in range(5)]
    r = tapi.get("/v1/alerts?limit=2", headers=a["viewer"]).get_json()
    assert [e["event_id"] for e in r["events"]] == [ids[2], ids[1]] and r["next_cursor"]
    r2 = tapi.get(f"/v1/alerts?limit=2&cursor={r['next_cursor']}", headers=a["viewer"]).get_json()
    assert [e["event_id"] for e in r2["events"]] == [ids[0]] and r2["next_cursor"] is None
    assert tapi.get("/v1/alerts/unacknowledged-count", headers=a["viewer"]).get_json() == {"unacknowledged": 3}

    assert tapi.post(f"/v1/alerts/{ids[1]}/ack", headers=a["viewer"]).status_code == 403
    r = tapi.post(f"/v1/alerts/{ids[1]}/ack", headers=a["admin"])
    assert r.status_code == 200
    ack = r.get_json()
    assert ack["acknowledged_by"] == "Alice Admin" and ack["acknowledged"] is True
    again = tapi.post(f"/v1/alerts/{ids[1]}/ack", headers=a["admin"]).get_json()
    assert again["acknowledged_at"] == ack["acknowledged_at"]  # idempotent, first one kept
    assert tapi.get("/v1/alerts/unacknowledged-count", headers=a["viewer"]).get_json() == {"unacknowledged": 2}
    assert [e["event_id"] for e in tapi.get("/v1/alerts?acknowledged=true", headers=a["viewer"]).get_json()["events"]] \
        == [ids[1]]
    assert [e["event_id"] for e in tapi.get("/v1/alerts?acknowledged=false", headers=a["viewer"]).get_json()["events"]] \
        == [ids[2], ids[0]]
    assert tapi.get(f"/v1/events/{ids[1]}", headers=a["viewer"]).get_json()["ack"]["by"] == "Alice Admin"
    # Not an alert: as missing.
    r = tapi.post(f"/v1/alerts/{ids[4]}/ack", headers=a["admin"])
    assert r.status_code == 404


# ------------------------------------------------------------------------- devices, cameras, edge


def test_enrollment_code_is_one_use_and_expires(fenv, tapi, edge):
    from vigint import provisioning

    a = _tenant(fenv)
    r = tapi.post("/v1/devices/enrollment-codes", headers=a["admin"], json={"device_id": "nuc-2", "name": "Gate box"})
    assert r.status_code == 201, r.get_json()
    code = r.get_json()["code"]
    expires = dt.datetime.fromisoformat(r.get_json()["expires_at"].replace("Z", "+00:00"))
    assert 800 < (expires - dt.datetime.now(UTC)).total_seconds() <= 900
    from vigint import clients

    stored = [s.to_dict() for s in clients.firestore().collection("enrollment_codes").stream()]
    assert len(stored) == 1 and code not in json.dumps(stored, default=str)

    r = edge.post("/v1/enroll", json={"code": code.lower()})  # case and dashes do not matter
    assert r.status_code == 200, r.get_json()
    creds = r.get_json()
    assert (creds["tenant_id"], creds["device_id"], creds["key_version"]) == (a["tenant_id"], "nuc-2", 1)
    hb = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={"version": "1"})
    assert hb.status_code == 200
    dev = tapi.get("/v1/devices/nuc-2", headers=a["viewer"]).get_json()
    assert dev["name"] == "Gate box" and dev["health"] == "online" and dev["enrolled_at"]

    again = edge.post("/v1/enroll", json={"code": code})
    assert (again.status_code, again.get_json()) == (401, {"error": "unauthorized"})
    old = provisioning.create_enrollment_code(a["tenant_id"], "nuc-3", ttl_seconds=60,
                                              now=dt.datetime.now(UTC) - dt.timedelta(seconds=61))
    expired = edge.post("/v1/enroll", json={"code": old["code"]})
    assert (expired.status_code, expired.get_data()) == (401, again.get_data())
    assert edge.post("/v1/enroll", json={"code": "AAAA-BBBB-CCCC"}).get_data() == again.get_data()
    assert tapi.get("/v1/devices/nuc-3", headers=a["viewer"]).status_code == 404
    bad = edge.post("/v1/enroll", json={"code": 5})
    assert (bad.status_code, bad.get_json()["field"]) == (400, "code")

    # Codes for an existing device are refused; ttl is bounded.
    r = tapi.post("/v1/devices/enrollment-codes", headers=a["admin"], json={"device_id": "nuc-2"})
    assert (r.status_code, r.get_json()["field"]) == (409, "device_id")
    r = tapi.post("/v1/devices/enrollment-codes", headers=a["admin"], json={"device_id": "nuc-4", "ttl_seconds": 5})
    assert (r.status_code, r.get_json()["field"]) == (400, "ttl_seconds")


def test_rotate_and_revoke_change_edge_api_auth(fenv, tapi, edge):
    a = _tenant(fenv)
    creds = a["creds"]
    assert edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).status_code == 200
    r = tapi.post("/v1/devices/nuc-1/rotate-key", headers=a["admin"])
    assert r.status_code == 200
    new = r.get_json()
    assert new["key_version"] == 2 and new["secret"] != creds["secret"]
    assert edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).status_code == 401
    assert edge.post("/v1/heartbeat", headers=_edge_auth(new), json={}).status_code == 200
    assert tapi.get("/v1/devices/nuc-1", headers=a["viewer"]).get_json()["key_version"] == 2

    r = tapi.post("/v1/devices/nuc-1/revoke", headers=a["admin"])
    assert r.status_code == 200 and r.get_json()["status"] == "revoked" and r.get_json()["health"] == "revoked"
    assert edge.post("/v1/heartbeat", headers=_edge_auth(new), json={}).status_code == 401
    assert tapi.post("/v1/devices/nuc-1/rotate-key", headers=a["admin"]).status_code == 409


def test_cameras_and_zones_reach_the_device_with_commands(fenv, tapi, edge):
    a = _tenant(fenv)
    creds = a["creds"]
    zone = {"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]], "labels": ["person"], "loiter_s": 30}
    r = tapi.post("/v1/cameras", headers=a["admin"],
                  json={"camera_id": "lobby", "device_id": "nuc-1", "name": "Lobby", "zones": [zone]})
    assert r.status_code == 201, r.get_json()
    assert tapi.post("/v1/cameras", headers=a["admin"],
                     json={"camera_id": "lobby", "device_id": "nuc-1"}).status_code == 409
    for body, field in [({"zones": [{**zone, "points": [[0.1, 0.1], [1.5, 0.2], [0.3, 0.3]]}]}, "zones.0.points.1.0"),
                        ({"zones": [{**zone, "points": [[0.1, 0.1], [0.2, 0.2]]}]}, "zones.0.points"),
                        ({"zones": [zone, zone]}, "zones"), ({"min_score": 1.5}, "min_score")]:
        r = tapi.patch("/v1/cameras/lobby", headers=a["admin"], json=body)
        assert (r.status_code, r.get_json()["field"]) == (400, field), (body, r.get_json())

    hb = edge.post("/v1/heartbeat", headers=_edge_auth(creds),
                   json={"cameras": {"lobby": {"fps": 9.5, "status": "ok"}}, "version": "0.2.0"}).get_json()
    assert [c["camera_id"] for c in hb["config"]["cameras"]] == ["lobby"]
    got_zone = hb["config"]["cameras"][0]["zones"][0]
    assert got_zone["points"] == zone["points"] and got_zone["loiter_s"] == 30 and got_zone["enter_s"] == 0
    assert hb["commands"] == []

    tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"enabled": False, "zones": []})
    assert tapi.post("/v1/devices/nuc-1/commands", headers=a["admin"], json={"type": "reload_config"}).status_code == 201
    hb = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()
    assert hb["config"]["cameras"][0]["enabled"] is False and hb["config"]["cameras"][0]["zones"] == []
    assert [c["type"] for c in hb["commands"]] == ["reload_config"]
    assert edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["commands"] == []

    devs = tapi.get("/v1/devices", headers=a["viewer"]).get_json()["devices"]
    assert devs[0]["health"] == "online" and devs[0]["device_id"] == "nuc-1"
    cams = tapi.get("/v1/cameras?device_id=nuc-1", headers=a["viewer"]).get_json()["cameras"]
    assert [c["camera_id"] for c in cams] == ["lobby"]
    assert tapi.delete("/v1/cameras/lobby", headers=a["admin"]).status_code == 200
    assert edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"] == {}


def test_masks_and_alert_zones_are_checked_stored_and_reach_the_device(fenv, tapi, edge):
    a = _tenant(fenv)
    creds = a["creds"]
    door = {"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]]}
    yard = {"name": "yard", "points": [[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]}
    street = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.08], [0.0, 0.08]]
    r = tapi.post("/v1/cameras", headers=a["admin"],
                  json={"camera_id": "lobby", "device_id": "nuc-1", "zones": [door, yard], "alert_zones": ["garage"]})
    assert (r.status_code, r.get_json()["field"]) == (400, "alert_zones") and "garage" in r.get_json()["error"]
    r = tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "lobby", "device_id": "nuc-1"})
    assert r.status_code == 201 and (r.get_json()["masks"], r.get_json()["alert_zones"]) == (None, None)
    hb = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()
    cam = hb["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == (None, None), "null: the device keeps its own"

    for body, field in [({"masks": [street[:2]]}, "masks.0"),
                        ({"masks": [[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]]}, "masks.0.1.0"),
                        ({"masks": [[[0.1, 0.1, 0.3], [0.2, 0.1], [0.5, 0.5]]]}, "masks.0.0"),
                        ({"masks": [{"points": street}]}, "masks.0"),
                        ({"alert_zones": ["door"]}, "alert_zones"),  # the camera has no zones yet
                        ({"zones": [door], "alert_zones": ["yard"]}, "alert_zones"),
                        ({"zones": [door], "alert_zones": ["door", "door"]}, "alert_zones"),
                        ({"zones": [door], "alert_zones": ["Door"]}, "alert_zones.0")]:
        r = tapi.patch("/v1/cameras/lobby", headers=a["admin"], json=body)
        assert (r.status_code, r.get_json()["field"]) == (400, field), (body, r.get_json())

    r = tapi.patch("/v1/cameras/lobby", headers=a["admin"],
                   json={"zones": [door, yard], "masks": [street], "alert_zones": ["yard"]})
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["masks"], r.get_json()["alert_zones"]) == ([street], ["yard"])
    from vigint.tenant_api.cameras import cameras_col

    stored = cameras_col(a["tenant_id"]).document("lobby").get()
    assert stored.to_dict()["masks"] == [{"points": [{"x": x, "y": y} for x, y in street]}]
    # alert zones checked against the stored zones when the body has none
    r = tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"alert_zones": ["door", "garage"]})
    assert (r.status_code, r.get_json()["field"]) == (400, "alert_zones") and "garage" in r.get_json()["error"]
    assert tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"alert_zones": ["door", "yard"]}).status_code == 200

    cam = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"][0]
    assert cam["masks"] == [street] and cam["alert_zones"] == ["door", "yard"]
    assert [z["name"] for z in cam["zones"]] == ["door", "yard"]
    assert tapi.get("/v1/cameras/lobby", headers=a["viewer"]).get_json()["masks"] == [street]

    # removing a zone drops it from the alert zones; [] masks and alert zones are kept as such (not null)
    assert tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"zones": [door]}).status_code == 200
    cam = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"][0]
    assert cam["alert_zones"] == ["door"] and cam["masks"] == [street]
    assert tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"masks": [], "alert_zones": []}).status_code == 200
    cam = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == ([], [])
    assert tapi.patch("/v1/cameras/lobby", headers=a["admin"], json={"masks": None, "alert_zones": None}).status_code == 200
    cam = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={}).get_json()["config"]["cameras"][0]
    assert (cam["masks"], cam["alert_zones"]) == (None, None)


# ---------------------------------------------------------------------------- analytics and usage


def test_counts_and_usage(fenv, tapi):
    from vigint import usage

    a = _tenant(fenv)
    creds = a["creds"]
    plan = [(0, "lobby", ("person",), ("door",)), (10, "lobby", ("person", "car"), ()),
            (70, "yard", ("car",), ("door",)), (24 * 60 + 5, "yard", ("person",), ())]
    for minutes, cam, labels, zones in plan:
        _store_event(fenv, creds, T0 + dt.timedelta(minutes=minutes), camera_id=cam, labels=labels, zones=zones)
    q = f"since={_z(T0)}&until={_z(T0 + dt.timedelta(hours=3))}"
    r = tapi.get(f"/v1/analytics/counts?bucket=hour&by=label&{q}", headers=a["viewer"]).get_json()
    assert r["total"] == 3 and len(r["buckets"]) == 3
    assert [(b["total"], b["counts"]) for b in r["buckets"]] == [(2, {"person": 2, "car": 1}), (1, {"car": 1}), (0, {})]
    assert r["buckets"][1]["start"].startswith(_z(T0 + dt.timedelta(hours=1))[:13])
    r = tapi.get(f"/v1/analytics/counts?bucket=hour&by=zone&{q}", headers=a["viewer"]).get_json()
    assert [b["counts"] for b in r["buckets"]] == [{"door": 1}, {"door": 1}, {}]
    day0 = T0.replace(hour=0)
    r = tapi.get(f"/v1/analytics/counts?bucket=day&by=camera&since={_z(day0)}&until={_z(day0 + dt.timedelta(days=2))}",
                 headers=a["viewer"]).get_json()
    assert [b["counts"] for b in r["buckets"]] == [{"lobby": 2, "yard": 1}, {"yard": 1}]
    for query, field in [("bucket=week", "bucket"), (f"since={_z(T0)}&until={_z(T0 - dt.timedelta(hours=1))}", "since"),
                         (f"bucket=hour&since={_z(T0 - dt.timedelta(days=40))}&until={_z(T0)}", "since")]:
        r = tapi.get(f"/v1/analytics/counts?{query}", headers=a["viewer"])
        assert (r.status_code, r.get_json()["field"]) == (400, field), query

    # Usage: ingest counted the events and clip bytes (month of ingestion); analyze/alert add the rest.
    month = dt.datetime.now(UTC).strftime("%Y-%m")
    usage.add(a["tenant_id"], gemini_tokens=1200, emails_sent=2)
    usage.add(a["tenant_id"], emails_sent=1)
    u = tapi.get(f"/v1/usage?month={month}", headers=a["viewer"]).get_json()
    assert u == {"month": month, "events": 4, "clip_bytes": 4 * len(fenv.media["clip"]), "gemini_tokens": 1200,
                 "emails_sent": 3}
    assert tapi.get("/v1/usage", headers=a["viewer"]).get_json() == u  # default: this month
    assert tapi.get("/v1/usage?month=1999-01", headers=a["viewer"]).get_json()["events"] == 0
    r = tapi.get("/v1/usage?month=2026-13", headers=a["viewer"])
    assert (r.status_code, r.get_json()["field"]) == (400, "month")


def test_kind_filters_events_and_counts_count_detections_by_default(fenv, tapi):
    a = _tenant(fenv)
    creds = a["creds"]
    detection = _store_event(fenv, creds, T0, labels=("person",))
    health = _store_event(fenv, creds, T0 + dt.timedelta(minutes=5), labels=("camera_offline",),
                          kind="camera_health", clip=None, snapshot=None, detections=[], max_count={})
    recording = _store_event(fenv, creds, T0 + dt.timedelta(minutes=10), labels=(), kind="recording",
                             severity="detection")

    def listed(query: str) -> list[tuple[str, str]]:
        r = tapi.get(f"/v1/events{query}", headers=a["viewer"])
        assert r.status_code == 200, r.get_json()
        return [(e["event_id"], e["kind"]) for e in r.get_json()["events"]]

    assert listed("") == [(recording, "recording"), (health, "camera_health"), (detection, "detection")]
    assert listed("?kind=recording") == [(recording, "recording")]
    assert listed("?kind=camera_health") == [(health, "camera_health")]
    assert listed(f"?kind=detection&camera_id=lobby&since={_z(T0)}") == [(detection, "detection")]

    q = f"bucket=hour&since={_z(T0)}&until={_z(T0 + dt.timedelta(hours=1))}"

    def counted(query: str) -> tuple[int, dict]:
        r = tapi.get(f"/v1/analytics/counts?{q}{query}", headers=a["viewer"])
        assert r.status_code == 200, r.get_json()
        [bucket] = r.get_json()["buckets"]
        assert bucket["total"] == r.get_json()["total"]
        return r.get_json()["total"], bucket["counts"]

    assert counted("") == (1, {"person": 1})  # detections only
    assert counted("&kind=detection") == (1, {"person": 1})
    assert counted("&kind=camera_health") == (1, {"camera_offline": 1})
    assert counted("&kind=recording&by=camera") == (1, {"lobby": 1})

    for path in ("/v1/events", "/v1/analytics/counts"):
        r = tapi.get(f"{path}?kind=bogus", headers=a["viewer"])
        assert (r.status_code, r.get_json()["field"]) == (400, "kind"), path
        assert r.get_json()["error"].startswith("kind: "), r.get_json()


def test_openapi_document_describes_every_route(fenv, tapi):
    from vigint.tenant_api.routes import ROUTES

    r = tapi.get("/openapi.json")  # public
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "API key `vgk_<id>.<secret>`"}
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert str(route.status) in op["responses"]
        names = {p["name"] for p in op.get("parameters", [])}
        assert set(route.params) <= names
        if route.query:
            assert set(route.query.model_fields) <= names
        if route.body:
            assert "requestBody" in op and "400" in op["responses"]
        if route.role == "admin":
            assert "403" in op["responses"]
    assert doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventPage"}
    kinds = {path: next(p["schema"] for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "kind")
             for path in ("/v1/events", "/v1/analytics/counts")}
    assert all(k["enum"] == ["detection", "camera_health", "recording"] for k in kinds.values())
    assert "default" not in kinds["/v1/events"] and kinds["/v1/analytics/counts"]["default"] == "detection"
