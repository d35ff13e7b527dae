"""Device commands with parameters and results, and requested-clip (``recording``) events: tenant_api and
edge_api through functions-framework (functions/main.py), ingest/analyze/alert in-process, all against the
Firestore and Pub/Sub emulators, fake-gcs-server, the SMTP sink and the local fake Gemini server."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest


UTC = dt.timezone.utc


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _edge_auth(creds: dict) -> dict:
    return {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"]}


def _tenant(fenv, recipients=("ops@example.com",), threshold: int = 1) -> dict:
    """A tenant with device nuc-1 and an admin and a viewer key."""
    from vigint import provisioning

    creds = fenv.provision(recipients=list(recipients), threshold=threshold)
    t = creds["tenant_id"]
    admin = provisioning.create_api_key(t, "admin", "Alice Admin")
    viewer = provisioning.create_api_key(t, "viewer", "Victor Viewer")
    return {"tenant_id": t, "creds": creds, "admin": _bearer(admin["key"]), "viewer": _bearer(viewer["key"])}


def _z(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip_body(camera_id: str = "lobby", start_ago_s: float = 300, length_s: float = 60) -> dict:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    start = now - dt.timedelta(seconds=start_ago_s)
    return {"type": "request_clip", "camera_id": camera_id, "start": _z(start),
            "end": _z(start + dt.timedelta(seconds=length_s))}


def _queue(tapi, a: dict, body: dict) -> dict:
    r = tapi.post("/v1/devices/nuc-1/commands", headers=a["admin"], json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _heartbeat(edge, creds: dict) -> list:
    r = edge.post("/v1/heartbeat", headers=_edge_auth(creds), json={})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["commands"]


# ------------------------------------------------------------------------------ queue and deliver


def test_each_command_type_reaches_the_heartbeat_once_with_its_params(fenv, tapi, edge):
    a = _tenant(fenv)
    assert tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "lobby", "device_id": "nuc-1"}
                     ).status_code == 201
    clip = _clip_body("lobby", start_ago_s=900, length_s=600)
    queued = [_queue(tapi, a, {"type": "report_status"}), _queue(tapi, a, clip),
              _queue(tapi, a, {"type": "reload_config"}), _queue(tapi, a, {"type": "restart"})]
    want_clip_params = {"camera_id": "lobby", "start": clip["start"].replace("Z", ".000000Z"),
                        "end": clip["end"].replace("Z", ".000000Z")}
    assert queued[1]["params"] == want_clip_params and queued[1]["status"] == "pending"
    assert queued[0]["params"] == {} and queued[0]["created_by"] == "Alice Admin"

    got = _heartbeat(edge, a["creds"])
    assert [c["command_id"] for c in got] == [q["command_id"] for q in queued]  # oldest first
    assert [(c["type"], c["params"]) for c in got] == [
        ("report_status", {}), ("request_clip", want_clip_params), ("reload_config", {}), ("restart", {})]
    assert all(set(c) == {"command_id", "type", "created_at", "params"} and c["created_at"].endswith("Z")
               for c in got)
    assert _heartbeat(edge, a["creds"]) == []  # handed over once

    listed = tapi.get("/v1/devices/nuc-1/commands", headers=a["viewer"]).get_json()
    assert [c["command_id"] for c in listed["commands"]] == [q["command_id"] for q in reversed(queued)]
    assert all(c["status"] == "delivered" and c["delivered_at"] for c in listed["commands"])
    assert listed["next_cursor"] is None


def test_request_clip_without_cloud_cameras_accepts_any_camera(fenv, tapi, edge):
    a = _tenant(fenv)
    q = _queue(tapi, a, _clip_body("back-door"))
    assert [c["params"]["camera_id"] for c in _heartbeat(edge, a["creds"])] == ["back-door"]
    assert q["params"]["camera_id"] == "back-door"


def test_bad_command_bodies_name_the_field_and_queue_nothing(fenv, tapi, edge):
    a = _tenant(fenv)
    assert tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "lobby", "device_id": "nuc-1"}
                     ).status_code == 201
    # Another device's camera is not one of nuc-1's.
    from vigint import provisioning

    provisioning.create_device(a["tenant_id"], "nuc-2", "nuc-2")
    assert tapi.post("/v1/cameras", headers=a["admin"], json={"camera_id": "yard", "device_id": "nuc-2"}
                     ).status_code == 201
    now = dt.datetime.now(UTC).replace(microsecond=0)
    good = _clip_body()
    drop = lambda *names: {k: v for k, v in good.items() if k not in names}  # noqa: E731
    cases = [
        (drop("camera_id"), "camera_id"),
        (drop("start"), "start"),
        (drop("end"), "end"),
        ({**good, "camera_id": "Lobby!"}, "camera_id"),
        ({**good, "camera_id": "yard"}, "camera_id"),
        ({**good, "camera_id": "nowhere"}, "camera_id"),
        ({**good, "start": "yesterday"}, "start"),
        ({**good, "start": good["start"][:-1]}, "start"),  # no UTC offset
        ({**good, "end": good["start"]}, "end"),  # end == start
        ({**good, "end": _z(now - dt.timedelta(seconds=400))}, "end"),  # before start
        ({**good, "end": _z(dt.datetime.fromisoformat(good["start"]) + dt.timedelta(seconds=601))}, "end"),
        ({**good, "start": _z(now - dt.timedelta(days=7, seconds=60)),
          "end": _z(now - dt.timedelta(days=7, seconds=30))}, "start"),
        ({**good, "start": _z(now), "end": _z(now + dt.timedelta(seconds=120))}, "end"),
        ({"type": "report_status", "camera_id": "lobby"}, "camera_id"),
        ({"type": "restart", "start": good["start"]}, "start"),
        ({"type": "format_disk"}, "type"),
        ({**good, "fps": 5}, "fps"),
    ]
    for body, field in cases:
        r = tapi.post("/v1/devices/nuc-1/commands", headers=a["admin"], json=body)
        assert (r.status_code, r.get_json()["field"]) == (400, field), (body, r.get_json())
        assert r.get_json()["error"].startswith(field), r.get_json()
    # Limits are inclusive: exactly 600 s long and ending 60 s ahead is fine.
    _queue(tapi, a, {**good, "start": _z(now - dt.timedelta(seconds=540)), "end": _z(now + dt.timedelta(seconds=60))})
    assert len(tapi.get("/v1/devices/nuc-1/commands", headers=a["admin"]).get_json()["commands"]) == 1
    assert len(_heartbeat(edge, a["creds"])) == 1
    # A viewer may read but not queue.
    assert tapi.post("/v1/devices/nuc-1/commands", headers=a["viewer"], json={"type": "restart"}).status_code == 403


# ----------------------------------------------------------------------------------------- results


def test_results_are_stored_once_and_shown_to_the_tenant(fenv, tapi, edge):
    a = _tenant(fenv)
    creds = a["creds"]
    status_cmd = _queue(tapi, a, {"type": "report_status"})
    clip_cmd = _queue(tapi, a, _clip_body("lobby"))
    assert len(_heartbeat(edge, creds)) == 2
    url = "/v1/commands/{}/result".format

    report = {"uptime_s": 1234, "cameras": {"lobby": {"fps": 9.8, "boxes": [[0.1, 0.2], [0.3, 0.4]]}}}
    r = edge.post(url(status_cmd["command_id"]), headers=_edge_auth(creds),
                  json={"status": "done", "detail": "all good", "result": report})
    assert (r.status_code, r.get_json()) == (200, {"command_id": status_cmd["command_id"], "status": "done"})
    # A repeat (even with another outcome) answers the stored status and changes nothing.
    r = edge.post(url(status_cmd["command_id"]), headers=_edge_auth(creds),
                  json={"status": "failed", "detail": "second try", "result": {"x": 1}})
    assert (r.status_code, r.get_json()) == (200, {"command_id": status_cmd["command_id"], "status": "done"})
    r = edge.post(url(clip_cmd["command_id"]), headers=_edge_auth(creds),
                  json={"status": "failed", "detail": "clip no longer in the ring buffer", "event_id": None})
    assert (r.status_code, r.get_json()) == (200, {"command_id": clip_cmd["command_id"], "status": "failed"})

    got = tapi.get(f"/v1/devices/nuc-1/commands/{status_cmd['command_id']}", headers=a["viewer"])
    assert got.status_code == 200
    got = got.get_json()
    assert (got["status"], got["detail"], got["result"], got["event_id"]) == ("done", "all good", report, None)
    assert got["completed_at"] and got["delivered_at"] and got["params"] == {}
    got = tapi.get(f"/v1/devices/nuc-1/commands/{clip_cmd['command_id']}", headers=a["viewer"]).get_json()
    assert (got["status"], got["detail"], got["result"]) == ("failed", "clip no longer in the ring buffer", None)
    assert got["params"]["camera_id"] == "lobby"
    # A finished command is not handed over again.
    assert _heartbeat(edge, creds) == []


def test_result_refusals(fenv, tapi, edge):
    from vigint import provisioning

    a, b = _tenant(fenv), _tenant(fenv)
    other_dev = provisioning.create_device(a["tenant_id"], "nuc-2", "nuc-2")
    mine = _queue(tapi, a, {"type": "report_status"})["command_id"]
    # nuc-2 of the same tenant, and nuc-1 of another tenant, each with a command of their own.
    other_dev_cmd = tapi.post("/v1/devices/nuc-2/commands", headers=a["admin"], json={"type": "restart"}).get_json()
    other_tenant_cmd = _queue(tapi, b, {"type": "restart"})["command_id"]
    url = "/v1/commands/{}/result".format
    done = {"status": "done"}

    answers = []
    for command_id in (other_dev_cmd["command_id"], other_tenant_cmd, "NoSuchCommand00000000", "x" * 65, "a.b"):
        r = edge.post(url(command_id), headers=_edge_auth(a["creds"]), json=done)
        answers.append((r.status_code, r.get_data()))
    assert len(set(answers)) == 1, answers  # byte-identical whoever owns the id
    assert answers[0][0] == 404 and json.loads(answers[0][1]) == {"error": "unknown command"}
    # The owners' commands were not touched.
    assert tapi.get(f"/v1/devices/nuc-1/commands/{other_tenant_cmd}", headers=b["admin"]).get_json()["status"] \
        == "pending"
    assert tapi.get(f"/v1/devices/nuc-2/commands/{other_dev_cmd['command_id']}", headers=a["admin"]
                    ).get_json()["status"] == "pending"
    # The right device can still report it.
    r = edge.post(url(other_dev_cmd["command_id"]), headers=_edge_auth(other_dev), json=done)
    assert (r.status_code, r.get_json()["status"]) == (200, "done")

    bad = [({"status": "ok"}, "status", 400), ({}, "status", 400),
           ({"status": "done", "detail": "x" * 501}, "detail", 400),
           ({"status": "done", "result": [1, 2]}, "result", 400),
           ({"status": "done", "event_id": "no"}, "event_id", 400),
           ({"status": "done", "extra": 1}, "extra", 400),
           ({"status": "done", "result": {"blob": "x" * (64 * 1024)}}, "result", 413)]
    for body, field, status in bad:
        r = edge.post(url(mine), headers=_edge_auth(a["creds"]), json=body)
        assert (r.status_code, r.get_json().get("field")) == (status, field), (field, r.get_json())
    # A body far over the limit is refused before it is parsed.
    r = edge.post(url(mine), headers=_edge_auth(a["creds"]), json={"status": "done", "result": {"b": "x" * 200_000}})
    assert r.status_code == 413
    # Nothing was stored by any refusal; wrong credentials are the usual 401.
    got = tapi.get(f"/v1/devices/nuc-1/commands/{mine}", headers=a["admin"]).get_json()
    assert (got["status"], got["result"], got["completed_at"]) == ("pending", None, None)
    r = edge.post(url(mine), headers={**_edge_auth(a["creds"]), "Authorization": "Bearer wrong"}, json=done)
    assert (r.status_code, r.get_json()) == (401, {"error": "unauthorized"})
    assert edge.get(url(mine), headers=_edge_auth(a["creds"])).status_code == 405
    # A result of exactly the limit is accepted.
    result = {"blob": ""}
    result["blob"] = "x" * (64 * 1024 - len(json.dumps(result, separators=(",", ":"))))
    r = edge.post(url(mine), headers=_edge_auth(a["creds"]), json={"status": "done", "result": result})
    assert r.status_code == 200, r.get_json()
    assert tapi.get(f"/v1/devices/nuc-1/commands/{mine}", headers=a["admin"]).get_json()["result"] == result


def test_tenant_command_listing_paginates_and_is_tenant_scoped(fenv, tapi):
    from vigint import provisioning

    a, b = _tenant(fenv), _tenant(fenv)
    ids = [_queue(tapi, a, {"type": t})["command_id"] for t in ("restart", "report_status", "reload_config")]
    provisioning.create_device(b["tenant_id"], "b-only", "B only")
    b_cmd = tapi.post("/v1/devices/b-only/commands", headers=b["admin"], json={"type": "restart"}).get_json()

    page1 = tapi.get("/v1/devices/nuc-1/commands?limit=2", headers=a["viewer"]).get_json()
    assert [c["command_id"] for c in page1["commands"]] == ids[:0:-1] and page1["next_cursor"]
    page2 = tapi.get(f"/v1/devices/nuc-1/commands?limit=2&cursor={page1['next_cursor']}",
                     headers=a["viewer"]).get_json()
    assert [c["command_id"] for c in page2["commands"]] == ids[:1] and page2["next_cursor"] is None
    for query, field in [("limit=101", "limit"), ("limit=0", "limit"), ("cursor=nonsense", "cursor"), ("x=1", "x")]:
        r = tapi.get(f"/v1/devices/nuc-1/commands?{query}", headers=a["viewer"])
        assert (r.status_code, r.get_json()["field"]) == (400, field), query

    def same_404(first: str, second: str) -> None:
        r1, r2 = tapi.get(first, headers=a["admin"]), tapi.get(second, headers=a["admin"])
        assert (r1.status_code, r1.get_data()) == (r2.status_code, r2.get_data()), (first, second)
        assert r1.status_code == 404

    same_404("/v1/devices/b-only/commands", "/v1/devices/no-such-box/commands")
    same_404(f"/v1/devices/b-only/commands/{b_cmd['command_id']}", f"/v1/devices/no-such-box/commands/{ids[0]}")
    # Tenant B also has a nuc-1: its command ids are unknown under A's nuc-1.
    b_nuc1 = _queue(tapi, b, {"type": "restart"})["command_id"]
    same_404(f"/v1/devices/nuc-1/commands/{b_nuc1}", "/v1/devices/nuc-1/commands/NoSuchCommand00000000")
    assert [c["command_id"] for c in tapi.get("/v1/devices/nuc-1/commands", headers=b["admin"]).get_json()[
        "commands"]] == [b_nuc1]


# ------------------------------------------------------------------------------ recording events


def test_recording_event_is_stored_not_analysed_and_not_emailed(fenv, tapi, edge, gemini, smtp_sink):
    from vigint import alert, analyze, pipeline

    # Threshold 0 and a recipient: any analysed detection event would be e-mailed.
    recipient = f"guard-{uuid.uuid4().hex[:8]}@example.com"
    a = _tenant(fenv, recipients=[recipient], threshold=0)
    creds = a["creds"]
    cmd = _queue(tapi, a, _clip_body("lobby"))
    [sent] = _heartbeat(edge, creds)
    start = dt.datetime.fromisoformat(sent["params"]["start"])
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    ev = fenv.ingested_event(creds, kind="recording", severity="detection", labels=(), camera_id="lobby",
                             start_time=iso(start), end_time=iso(start + dt.timedelta(seconds=60)))
    msg = json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()

    assert analyze.handle_ingested(data=msg) == "analyzed:not_analyzed"
    assert gemini.requests == []
    doc = pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()
    assert (doc["kind"], doc["analysis"]["status"], doc["analysis"]["reason"]) == (
        "recording", "not_analyzed", "requested recording")
    assert len(fenv.pull("analyzed")) == 1  # the pipeline goes on to alert as for any event

    assert alert.handle_analyzed(data=msg) == "not_alerted"
    doc = pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()
    assert (doc["alert"]["alerted"], doc["alert"]["reason"]) == (False, "requested recording")
    assert [m for m in smtp_sink.messages() if m["To"] == recipient] == []

    # The device links the result to the event; the tenant finds the event and its clip.
    r = edge.post(f"/v1/commands/{cmd['command_id']}/result", headers=_edge_auth(creds),
                  json={"status": "done", "event_id": ev["event_id"], "result": {"duration_s": 60.0}})
    assert r.status_code == 200
    got = tapi.get(f"/v1/devices/nuc-1/commands/{cmd['command_id']}", headers=a["viewer"]).get_json()
    assert (got["status"], got["event_id"]) == ("done", ev["event_id"])
    listed = tapi.get("/v1/events", headers=a["viewer"]).get_json()["events"]
    assert [(e["event_id"], e["kind"], e["alerted"]) for e in listed] == [(ev["event_id"], "recording", False)]
    detail = tapi.get(f"/v1/events/{ev['event_id']}", headers=a["viewer"]).get_json()
    assert detail["clip_url"] and detail["snapshot_url"] and detail["labels"] == []

    # Control: a detection event of the same tenant does go to Gemini and is e-mailed.
    det = fenv.ingested_event(creds, labels=("person",))
    det_msg = json.dumps({"tenant_id": det["tenant_id"], "event_id": det["event_id"]}).encode()
    assert analyze.handle_ingested(data=det_msg) == "analyzed:ok" and len(gemini.requests) == 1
    assert alert.handle_analyzed(data=det_msg) == "sent:1"
    assert len([m for m in smtp_sink.messages() if m["To"] == recipient]) == 1
