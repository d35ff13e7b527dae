"""retention and housekeeping against the emulators and fake-gcs-server: what is deleted is gone from
Firestore and the bucket, what is kept stays; stale devices raise one health alert."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from tests.functions.conftest import FIXTURE_START, all_docs, bucket_objects


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _links(tenant_id: str) -> list:
    from google.cloud import firestore as fs

    from vigint import clients

    return list(clients.firestore().collection("links").where(filter=fs.FieldFilter("tenant_id", "==", tenant_id)).stream())


def _alerted_event(fenv, creds, t0: dt.datetime, camera_id: str = "lobby") -> dict:
    """An event at ``t0`` that went through ingest, analyze and alert (objects, link, delivery exist)."""
    from vigint import alert, analyze, ingest

    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    ev = fenv.event(creds, camera_id=camera_id, start_time=iso(t0), end_time=iso(t0 + dt.timedelta(seconds=2)))
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    assert ingest.handle_edge_event(data=data, attributes=attrs, now=t0 + dt.timedelta(seconds=5)) == "created"
    analyze.handle_ingested(data=_msg(ev))
    assert alert.handle_analyzed(data=_msg(ev), now=t0 + dt.timedelta(seconds=10)).startswith("sent:")
    return ev


def test_retention_deletes_old_events_objects_and_links_and_keeps_recent_ones(fenv, smtp_sink):
    from vigint import clients, config, pipeline, retention
    from vigint.schema import event_prefix

    recipient = f"ret-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id = creds["tenant_id"]
    pipeline.tenant_ref(tenant_id).update({"retention_days": 3})
    old = _alerted_event(fenv, creds, FIXTURE_START)
    # Objects carry the real creation time; run "now" far enough ahead that the orphan is past retention. The
    # recent event (and its link) is one day before that run, whatever day the suite runs on.
    run_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3, hours=1)
    recent = _alerted_event(fenv, creds, run_at - dt.timedelta(days=1), camera_id="gate")
    # An orphan upload (its event never got stored) older than the retention.
    orphan = event_prefix(tenant_id, creds["device_id"], "evt_ORPHAN000000") + "clip.mp4"
    clients.storage().bucket(config.settings().bucket).blob(orphan).upload_from_string(b"x", content_type="video/mp4")
    old_prefix = event_prefix(tenant_id, creds["device_id"], old["event_id"])
    recent_prefix = event_prefix(tenant_id, creds["device_id"], recent["event_id"])
    assert len(bucket_objects(old_prefix)) == 2 and len(_links(tenant_id)) == 2

    result = retention.run_housekeeping(now=run_at)
    assert result["deleted"]["events"] >= 1

    assert not pipeline.event_ref(tenant_id, old["event_id"]).get().exists
    assert all_docs(pipeline.event_ref(tenant_id, old["event_id"])) == []  # deliveries too
    assert bucket_objects(old_prefix) == [] and bucket_objects(orphan) == []
    assert [l.get("event_id") for l in _links(tenant_id)] == [recent["event_id"]]
    # The recent event is untouched.
    assert pipeline.event_ref(tenant_id, recent["event_id"]).get().exists
    assert len(bucket_objects(recent_prefix)) == 2
    # The link page of a deleted event answers 410 like an expired one (no token is kept to test; the link
    # documents are gone, which is stronger).


def test_expire_at_is_set_on_links(fenv, smtp_sink):
    from vigint import pipeline

    recipient = f"ttl-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    pipeline.tenant_ref(creds["tenant_id"]).update({"retention_days": 30})
    t0 = FIXTURE_START
    _alerted_event(fenv, creds, t0)
    (link,) = _links(creds["tenant_id"])
    assert link.get("expire_at") == t0 + dt.timedelta(seconds=10, days=30)


def test_delete_camera_leaves_nothing_of_it(fenv, smtp_sink):
    from vigint import pipeline, retention
    from vigint.schema import event_prefix

    creds = fenv.provision(recipients=[f"cam-{uuid.uuid4().hex[:8]}@example.com"])
    tenant_id = creds["tenant_id"]
    gone = [_alerted_event(fenv, creds, FIXTURE_START + dt.timedelta(minutes=i), camera_id="garage") for i in range(2)]
    kept = _alerted_event(fenv, creds, FIXTURE_START, camera_id="lobby")

    counts = retention.delete_camera(tenant_id, "garage")
    assert counts["events"] == 2 and counts["objects"] == 4 and counts["links"] == 2
    for ev in gone:
        assert all_docs(pipeline.event_ref(tenant_id, ev["event_id"])) == []
        assert bucket_objects(event_prefix(tenant_id, creds["device_id"], ev["event_id"])) == []
    assert not pipeline.tenant_ref(tenant_id).collection("cooldowns").document("garage").get().exists
    assert [l.get("event_id") for l in _links(tenant_id)] == [kept["event_id"]]
    assert pipeline.event_ref(tenant_id, kept["event_id"]).get().exists
    assert len(bucket_objects(event_prefix(tenant_id, creds["device_id"], kept["event_id"]))) == 2


def test_delete_tenant_leaves_nothing_behind(fenv, smtp_sink):
    from vigint import pipeline, retention, usage

    a = fenv.provision(recipients=[f"a-{uuid.uuid4().hex[:8]}@example.com"])
    b = fenv.provision(recipients=[f"b-{uuid.uuid4().hex[:8]}@example.com"])
    for creds in (a, b):
        _alerted_event(fenv, creds, FIXTURE_START)
    # Counted in the month ingest stored it (its ``now``: 5 s after the start), whatever month the suite runs in.
    assert usage.get(a["tenant_id"], usage.month_key(FIXTURE_START + dt.timedelta(seconds=5)))["events"] == 1

    counts = retention.delete_tenant(a["tenant_id"])
    assert counts["objects"] == 2 and counts["links"] == 1 and counts["documents"] >= 5
    assert all_docs(pipeline.tenant_ref(a["tenant_id"])) == []
    assert list(pipeline.tenant_ref(a["tenant_id"]).collections()) == []
    assert bucket_objects(f"tenants/{a['tenant_id']}/") == []
    assert _links(a["tenant_id"]) == []
    # The other tenant is intact.
    assert len(bucket_objects(f"tenants/{b['tenant_id']}/")) == 2 and len(_links(b["tenant_id"])) == 1
    assert len(all_docs(pipeline.tenant_ref(b["tenant_id"]))) >= 5


def test_stale_device_raises_one_health_alert(fenv, smtp_sink):
    from vigint import alert, analyze, pipeline, retention

    recipient = f"stale-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id = creds["tenant_id"]
    now = dt.datetime.now(dt.timezone.utc)
    device = pipeline.tenant_ref(tenant_id).collection("devices").document(creds["device_id"])
    device.update({"last_heartbeat_at": now - dt.timedelta(seconds=4 * 60)})  # 4 x 60 s: not yet stale
    assert retention.check_stale_devices(tenant_id, now) == []
    device.update({"last_heartbeat_at": now - dt.timedelta(seconds=6 * 60)})  # 6 x 60 s > 5 x 60 s
    (event_id,) = retention.check_stale_devices(tenant_id, now)
    assert retention.check_stale_devices(tenant_id, now + dt.timedelta(minutes=5)) == []  # same silent spell
    msgs = fenv.pull("ingested")
    assert [json.loads(m.data)["event_id"] for m in msgs] == [event_id]

    data = json.dumps({"tenant_id": tenant_id, "event_id": event_id}).encode()
    assert analyze.handle_ingested(data=data) == "analyzed:detections_only"
    assert alert.handle_analyzed(data=data, now=now) == "sent:1"
    (mail,) = [m for m in smtp_sink.messages() if m["To"] == recipient]
    assert mail["Subject"] == f"[Vigint] Camera health: Device stopped reporting: {creds['device_id']}"
    assert "Condition: device_offline" in mail.get_body(preferencelist=("plain",)).get_content()


def test_retention_entry_point(fenv):
    import functions_framework

    app = functions_framework.create_app(target="retention", source="functions/main.py", signature_type="http")
    client = app.test_client()
    fenv.provision()
    r = client.post("/")
    assert r.status_code == 200
    body = r.get_json()
    assert body["tenants"] >= 1 and set(body["deleted"]) == {"events", "objects", "links", "documents", "commands"}
    assert client.put("/").status_code == 405


def test_erase_camera_on_request_through_the_tenant_api_and_tenant_delete_through_the_cli(fenv, smtp_sink):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from vigint import api_keys, pipeline, tenant_api

    a = fenv.provision(recipients=[f"e-{uuid.uuid4().hex[:8]}@example.com"])
    b = fenv.provision(recipients=[f"f-{uuid.uuid4().hex[:8]}@example.com"])
    ev_a = _alerted_event(fenv, a, FIXTURE_START, camera_id="garage")
    ev_b = _alerted_event(fenv, b, FIXTURE_START, camera_id="garage")

    def call(creds, role):
        key, _ = api_keys.create_key(creds["tenant_id"], role=role, name="t")
        return tenant_api.handle(method="POST", path="/v1/cameras/garage/erase",
                                 headers={"Authorization": f"Bearer {key}"}, query={}, body=b"")

    assert call(a, "viewer")[1] == 403
    body, status, _ = call(b, "admin")  # tenant B erases its own garage only
    assert status == 200 and body["events"] == 1
    assert pipeline.event_ref(a["tenant_id"], ev_a["event_id"]).get().exists
    assert not pipeline.event_ref(b["tenant_id"], ev_b["event_id"]).get().exists

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'functions'}"}
    cli = [sys.executable, "-m", "vigint.admin", "tenant", "delete", "--id", a["tenant_id"]]
    wrong = subprocess.run([*cli, "--confirm", "someone-else"], env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and pipeline.tenant_ref(a["tenant_id"]).get().exists
    key_a, _ = api_keys.create_key(a["tenant_id"], role="admin", name="left-behind?")
    done = subprocess.run([*cli, "--confirm", a["tenant_id"]], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"]["objects"] == 2
    assert all_docs(pipeline.tenant_ref(a["tenant_id"])) == [] and bucket_objects(f"tenants/{a['tenant_id']}/") == []
    assert api_keys.verify(key_a) is None, "the deleted tenant's API keys no longer authenticate"
    assert api_keys.list_keys(a["tenant_id"]) == []


def test_retention_deletes_device_commands_older_than_the_retention_and_keeps_recent_ones(fenv):
    from vigint import pipeline, retention

    creds = fenv.provision()
    tenant_id = creds["tenant_id"]
    pipeline.tenant_ref(tenant_id).update({"retention_days": 3})
    run_at = dt.datetime.now(dt.timezone.utc)
    commands = pipeline.tenant_ref(tenant_id).collection("devices").document(creds["device_id"]).collection("commands")
    ages = {"old_done": (4, "done"), "old_pending": (10, "pending"), "recent": (2, "done"), "today": (0, "pending")}
    for cid, (days, status) in ages.items():
        commands.document(cid).set({"type": "report_status", "params": {}, "status": status,
                                    "created_at": run_at - dt.timedelta(days=days, minutes=1)})

    counts = retention.apply_retention(tenant_id, pipeline.tenant_ref(tenant_id).get().to_dict(), run_at)

    assert counts["commands"] == 2
    assert sorted(d.id for d in commands.list_documents()) == ["recent", "today"]
