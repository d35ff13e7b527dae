"""ingest against the real Firestore and Pub/Sub emulators."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cloudevents.http import CloudEvent

from tests.functions.conftest import FIXTURE_START


def _drops(stage: str = "ingest") -> dict:
    from vigint import clients

    snap = clients.firestore().collection("stats").document(f"{stage}_drops").get()
    return snap.to_dict() if snap.exists else {}


def _events(tenant_id: str) -> list:
    from vigint import pipeline

    return list(pipeline.tenant_ref(tenant_id).collection("events").stream())


def test_valid_message_creates_one_event_and_publishes(fenv):
    from vigint import ingest

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)

    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m1") == "created"

    docs = _events(creds["tenant_id"])
    assert [d.id for d in docs] == [ev["event_id"]]
    stored = docs[0].to_dict()
    assert stored["status"] == "ingested"
    assert stored["device_id"] == creds["device_id"] and stored["camera_id"] == "lobby"
    assert stored["clip"]["object"] == ev["clip"]["object"]
    assert stored["start_time"] == FIXTURE_START
    assert stored["ingested_at"] is not None
    msgs = fenv.pull("ingested")
    assert len(msgs) == 1
    assert json.loads(msgs[0].data) == {"tenant_id": creds["tenant_id"], "event_id": ev["event_id"]}
    assert dict(msgs[0].attributes) == {"tenant_id": creds["tenant_id"], "event_id": ev["event_id"]}
    assert _drops() == {}


def test_redelivery_stores_once_and_publishes_once(fenv):
    from vigint import ingest

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    outcomes = [ingest.handle_edge_event(data=data, attributes=attrs) for _ in range(3)]

    assert outcomes == ["created", "duplicate", "duplicate"]
    assert len(_events(creds["tenant_id"])) == 1
    assert len(fenv.pull("ingested")) == 1


def test_redelivery_after_a_lost_publish_publishes(fenv):
    """The event was stored but the follow-on publish never happened (crash): redelivery publishes it."""
    from vigint import ingest, pipeline

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    ingest.handle_edge_event(data=data, attributes=attrs)
    assert len(fenv.pull("ingested")) == 1
    ref = pipeline.event_ref(creds["tenant_id"], ev["event_id"])
    ref.update({"published.ingested": False})
    # Within the publisher's lease the redelivery must not publish (the claimer may still be at work)...
    with pytest.raises(pipeline.InProgress):
        ingest.handle_edge_event(data=data, attributes=attrs)
    assert fenv.pull("ingested", wait_s=0.3) == []
    # ... once the lease has run out (the claimer died), it publishes.
    ref.update({"claims.publish_ingested": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=600)})
    assert ingest.handle_edge_event(data=data, attributes=attrs) == "duplicate"
    assert len(fenv.pull("ingested")) == 1


def test_through_functions_framework_cloudevent(fenv):
    """The real entry point: a Pub/Sub push CloudEvent through functions-framework's app."""
    import functions_framework

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    app = functions_framework.create_app(target="ingest", source="functions/main.py", signature_type="cloudevent")
    event = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/test"},
        {"message": {"data": base64.b64encode(data).decode(), "attributes": attrs, "messageId": "42"},
         "subscription": "projects/p/subscriptions/ingest-push"},
    )
    from cloudevents.conversion import to_structured

    headers, body = to_structured(event)
    resp = app.test_client().post("/", headers=headers, data=body)
    assert resp.status_code == 200, resp.data
    assert [d.id for d in _events(creds["tenant_id"])] == [ev["event_id"]]


def _bad_cases(fenv):
    """(reason, data, attrs, tenant_to_check) for every permanent failure."""
    from vigint import device_keys, provisioning

    a = fenv.provision()
    ev = fenv.event(a)
    cases = []

    data, attrs = fenv.message(a, ev)
    cases.append(("bad_signature", data, {**attrs, "signature": device_keys.sign("not-the-secret", data)}, a))

    ghost = {**a, "device_id": "ghost-box"}
    ev_g = fenv.event(ghost)
    cases.append(("unknown_device", *fenv.message(ghost, ev_g), a))

    # The device exists in tenant B only; the message claims tenant A and is signed with B's real secret.
    b = fenv.provision(device_id="b-box")
    ev_b = fenv.event({**b, "tenant_id": a["tenant_id"]})
    data_b, attrs_b = fenv.message(b, ev_b)
    cases.append(("unknown_device", data_b, {**attrs_b, "tenant_id": a["tenant_id"]}, a))
    # Attributes say B (correct, signed with B's secret) but the body says tenant A.
    ev_b2 = fenv.event({**b, "tenant_id": a["tenant_id"]})
    data_b2, attrs_b2 = fenv.message(b, ev_b2)
    cases.append(("attributes_mismatch", data_b2, {**attrs_b2, "tenant_id": b["tenant_id"]}, b))

    junk = b'{"schema_version": 1, "event_id": '
    cases.append(("invalid_json", *fenv.message(a, junk, event_id=ev["event_id"]), a))

    bad = fenv.event(a, end_time=(FIXTURE_START - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))  # ends before it starts
    cases.append(("invalid_body", *fenv.message(a, bad), a))
    extra = {**fenv.event(a), "surprise": 1}
    cases.append(("invalid_body", *fenv.message(a, extra), a))
    foreign = fenv.event(a)
    foreign["clip"] = {**foreign["clip"], "object": foreign["clip"]["object"].replace(a["device_id"], "other-box")}
    cases.append(("invalid_body", *fenv.message(a, foreign), a))

    revoked = fenv.provision(tenant_id=a["tenant_id"], device_id="old-box")
    provisioning.revoke_device(a["tenant_id"], "old-box")
    cases.append(("device_not_active", *fenv.message(revoked, fenv.event(revoked)), a))
    return cases


def test_permanent_failures_are_dropped_and_counted(fenv):
    from vigint import ingest

    cases = _bad_cases(fenv)
    expected: dict[str, int] = {}
    for reason, data, attrs, tenant in cases:
        outcome = ingest.handle_edge_event(data=data, attributes=attrs)  # must not raise
        assert outcome == f"dropped:{reason}", (reason, outcome)
        expected[reason] = expected.get(reason, 0) + 1
    for tenant in {c[3]["tenant_id"] for c in cases}:
        assert _events(tenant) == []
    drops = _drops()
    assert {k: drops.get(k) for k in expected} == expected
    assert drops["total"] == len(cases)
    assert fenv.pull("ingested", wait_s=0.5) == []


@pytest.mark.parametrize("attrs_patch", [{"key_version": "2"}, {"schema_version": "2"}, {"event_id": "../../x"}])
def test_bad_attributes_dropped(fenv, attrs_patch):
    from vigint import ingest

    creds = fenv.provision()
    data, attrs = fenv.message(creds, fenv.event(creds))
    assert ingest.handle_edge_event(data=data, attributes={**attrs, **attrs_patch}).startswith("dropped:")
    assert _events(creds["tenant_id"]) == []
