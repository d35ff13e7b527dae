"""The inputs issue 14 found giving a 5xx, each sent to the stack's real function processes
(functions-framework servers, Firestore emulator): deep JSON, ids Firestore reserves, heartbeat values
Firestore cannot store. Each now gets a 400 naming the field, the 404 of a missing object, or (ingest) a
counted drop that is acknowledged.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.functions import hostile

DEEP = [b"[" * 5000 + b"]" * 5000, b'{"a":' * 1000 + b"1" + b"}" * 1000, b'{"files": ' + b"[" * 3000]


def _auth(creds: dict) -> dict:
    return {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"], "Content-Type": "application/json"}


# ------------------------------------------------------------------------------------------------ edge_api


@pytest.mark.parametrize("route", ["/v1/enroll", "/v1/uploads", "/v1/heartbeat", "/v1/commands/abc123/result"])
def test_edge_api_deep_json_is_a_400(stack, fenv, route):
    creds = fenv.provision()
    headers = {"Content-Type": "application/json"} if route == "/v1/enroll" else _auth(creds)
    for body in DEEP:
        r = requests.post(stack.urls["edge_api"] + route, data=body, headers=headers, timeout=30)
        assert r.status_code == 400, (route, r.status_code, r.text[:200])
        assert r.json()["field"] == "body" and "deeper than 32" in r.json()["error"]


@pytest.mark.parametrize("event_id", hostile.RESERVED_IDS)
def test_edge_api_reserved_event_ids_are_a_400_naming_the_field(stack, fenv, event_id):
    creds = fenv.provision()
    up = requests.post(stack.urls["edge_api"] + "/v1/uploads", headers=_auth(creds), timeout=30, json={
        "event_id": event_id, "files": [{"name": "clip.mp4", "content_type": "video/mp4", "bytes": 10}]})
    assert (up.status_code, up.json()["field"]) == (400, "event_id"), up.text
    res = requests.post(stack.urls["edge_api"] + "/v1/commands/abc123/result", headers=_auth(creds), timeout=30,
                        json={"status": "done", "event_id": event_id})
    assert (res.status_code, res.json()["field"]) == (400, "event_id"), res.text


@pytest.mark.parametrize("body, field", [
    ({"cameras": {"lobby": {"boxes": [[0.1, 0.2]]}}}, "cameras.lobby.boxes.0"),
    ({"spool": {"bytes": 2 ** 64}}, "spool.bytes"),
    ({"spool": {"bytes": -(2 ** 63) - 1}}, "spool.bytes"),
    ({"cameras": {"": {"fps": 1}}}, "cameras"),
    ({"cameras": {"lobby": {"": 1}}}, "cameras.lobby"),
    ({"cameras": {"__name__": 1}}, "cameras.__name__"),
    ({"spool": {"x": {"__abcdef__": True}}}, "spool.x.__abcdef__"),
    ({"cameras": json.loads('{"a":' * 25 + "1" + "}" * 25)}, "cameras" + ".a" * 19),
])
def test_heartbeat_values_firestore_cannot_store_are_a_400(stack, fenv, body, field):
    from vigint import pipeline

    creds = fenv.provision()
    r = requests.post(stack.urls["edge_api"] + "/v1/heartbeat", headers=_auth(creds), json=body, timeout=30)
    assert (r.status_code, r.json()["field"]) == (400, field), r.text
    assert r.json()["error"].startswith(f"{field}: ")
    dev = pipeline.tenant_ref(creds["tenant_id"]).collection("devices").document(creds["device_id"]).get().to_dict()
    assert dev.get("last_heartbeat") is None  # nothing half-written
    ok = requests.post(stack.urls["edge_api"] + "/v1/heartbeat", headers=_auth(creds), timeout=30,
                       json={"cameras": {"lobby": {"fps": 9.5, "zones": ["door", {"n": [1, 2]}]}},
                             "spool": {"bytes": 2 ** 63 - 1, "a.b": None}})
    assert ok.status_code == 200, ok.text


def test_the_value_check_agrees_with_the_firestore_emulator(fenv):
    """Every value the check refuses, the emulator refuses too; the edge cases it accepts, the emulator stores."""
    from vigint import bodies, clients

    ref = clients.firestore().collection("probe").document(uuid.uuid4().hex)
    for value in hostile.UNSTORABLE_VALUES:
        with pytest.raises(bodies.BodyError):
            bodies.check_firestore_value(value, "x")
        with pytest.raises(Exception):  # noqa: B017 - InvalidArgument from the emulator or ValueError from the client
            ref.set({"x": value})
    nest = 1
    for _ in range(20):
        nest = {"a": nest}
    for value in ([1, {"a": [2]}], 2 ** 63 - 1, -(2 ** 63), {"a.b": 1, "_x_": 2}, nest, [{"a": [{"b": []}]}]):
        bodies.check_firestore_value(value, "x")
        ref.set({"x": value})
        assert ref.get().to_dict()["x"] == value


# ---------------------------------------------------------------------------------------------- tenant_api


@pytest.fixture
def admin(fenv):
    from vigint import provisioning

    creds = fenv.provision()
    key = provisioning.create_api_key(creds["tenant_id"], "admin", "Fuzzer")
    return creds, {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}


def test_tenant_api_deep_json_is_a_400(stack, admin):
    _, headers = admin
    for path, method in (("/v1/tenant", "PATCH"), ("/v1/cameras", "POST"), ("/v1/devices/nuc-1/commands", "POST")):
        for body in DEEP:
            r = requests.request(method, stack.urls["tenant_api"] + path, data=body, headers=headers, timeout=30)
            assert (r.status_code, r.json()["field"]) == (400, "body"), (path, r.text[:200])


@pytest.mark.parametrize("event_id", hostile.RESERVED_IDS)
def test_tenant_api_reserved_ids_get_the_answers_of_missing_ones(stack, admin, event_id):
    import base64

    _, headers = admin
    base = stack.urls["tenant_api"]
    for method, path, missing_id in (("GET", "/v1/events/{}", "evt_doesnotexist"),
                                     ("POST", "/v1/alerts/{}/ack", "evt_doesnotexist"),
                                     ("GET", "/v1/devices/{}", "no-such-box"), ("GET", "/v1/cameras/{}", "no-such-cam"),
                                     ("GET", "/v1/devices/nuc-1/commands/{}", "abc123"),
                                     ("DELETE", "/v1/api-keys/{}", "0123456789ab")):
        missing = requests.request(method, base + path.format(missing_id), headers=headers, timeout=30)
        reserved = requests.request(method, base + path.format(event_id), headers=headers, timeout=30)
        assert missing.status_code == 404
        assert (reserved.status_code, reserved.json()) == (missing.status_code, missing.json()), path
    cursor = base64.urlsafe_b64encode(json.dumps({"t": "2026-01-01T00:00:00.000000Z", "id": event_id}).encode())
    for path in ("/v1/events", "/v1/alerts", "/v1/devices/nuc-1/commands"):
        r = requests.get(base + path, params={"cursor": cursor.decode().rstrip("=")}, headers=headers, timeout=30)
        assert (r.status_code, r.json()["field"]) == (400, "cursor"), (path, r.text)


# -------------------------------------------------------------------------------------------------- ingest


def test_ingest_drops_and_counts_reserved_ids_and_deep_data(stack, fenv):
    """Signed messages with a reserved id (attribute, data), deep data, an integer beyond 64 bits: each is
    acknowledged by the stack's ingest (2xx, so Pub/Sub does not redeliver into the dead-letter topic), logged
    as a drop with its reason and counted in ``stats/ingest_drops``."""
    from vigint import clients

    creds = fenv.provision()
    ev = fenv.event(creds)
    run = uuid.uuid4().hex[:10]
    cases = {
        # The reserved id in the attributes and the data: on main this passed every check and raised at
        # Firestore on each delivery, then went to the dead-letter topic.
        "bad_attributes": fenv.message(creds, fenv.event(creds, event_id="__abcdef__")),
        "bad_attributes_only": fenv.message(creds, ev, event_id="__abcdef__"),
        "invalid_body_data_id": fenv.message(creds, {**ev, "event_id": "__abcdef__"}, event_id=ev["event_id"]),
        "too_deep": fenv.message(creds, b'{"a":' * 2000 + b"1" + b"}" * 2000, event_id=ev["event_id"]),
        "invalid_json": fenv.message(creds, json.dumps(ev).replace('"lobby"', '"\\ud800"').encode(),
                                     event_id=ev["event_id"]),
        "invalid_body_int": fenv.message(creds, {**ev, "max_count": {"person": 2 ** 64}}),
        "invalid_body_frames": fenv.message(creds, {**ev, "clip": {**ev["clip"], "frames": 2 ** 63}}),
    }
    v2 = {**ev, "schema_version": 2, "phase": "start", "seq": 0, "first_seen": ev["start_time"],
          "confirmed_at": ev["start_time"], "sent_at": ev["start_time"], "continues": "__abcdef__",
          "clip": None, "snapshot": None}
    cases["invalid_body_v2"] = fenv.message(creds, v2, schema_version="2", seq="0", phase="start")
    stats = clients.firestore().collection("stats").document("ingest_drops")
    before = (stats.get().to_dict() or {}).get("total", 0)
    ids = {}
    for i, (reason, (data, attrs)) in enumerate(cases.items()):
        mid = f"fuzz-{run}-{i}"
        ids[mid] = next(r for r in ("invalid_body", "bad_attributes", reason) if reason.startswith(r))
        r = requests.post(stack.urls["ingest"] + "/", json=hostile.push_envelope(data, attrs, mid, stack.project),
                          timeout=30)
        assert 200 <= r.status_code < 300, (reason, r.status_code, r.text[:300])
    assert hostile.logged_drops(stack, ids) == {mid: [reason] for mid, reason in ids.items()}
    assert (stats.get().to_dict() or {}).get("total", 0) - before >= len(cases)
    from vigint import pipeline

    assert not pipeline.event_ref(creds["tenant_id"], ev["event_id"]).get().exists


@pytest.mark.parametrize("function", ["ingest", "analyze", "alert"])
def test_push_data_that_is_not_base64_is_acknowledged_and_dropped(stack, fenv, function):
    """A forged push whose ``message.data`` is not base64 gets a 2xx (no redelivery loop), and ingest logs
    it as a drop (``bad_signature``: the empty data it becomes matches no signature)."""
    creds = fenv.provision()
    ev = fenv.event(creds)
    _, attrs = fenv.message(creds, ev)
    mid = f"not-b64-{function}-{uuid.uuid4().hex[:8]}"
    envelope = hostile.push_envelope(b"", attrs, mid, stack.project)
    envelope["message"]["data"] = "%%% not base64 %%%"
    r = requests.post(stack.urls[function] + "/", json=envelope, timeout=30)
    assert 200 <= r.status_code < 300, (function, r.status_code, r.text[:300])
    if function == "ingest":
        assert hostile.logged_drops(stack, [mid]) == {mid: ["bad_signature"]}
