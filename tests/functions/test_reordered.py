"""Out-of-order delivery: Pub/Sub does not keep order, so messages of two events (and of the stages of one
event) may arrive in any order; each event still ends as one document, one alert decision and one email per
recipient, and a message for a stage that cannot have run yet is dropped with its reason, not retried."""

from __future__ import annotations

import datetime as dt
import json


def _follow_on(creds, ev) -> bytes:
    return json.dumps({"tenant_id": creds["tenant_id"], "event_id": ev["event_id"]}).encode()


def test_two_events_delivered_in_reverse_order_each_alert_once(fenv, smtp_sink):
    from vigint import alert, analyze, ingest, pipeline

    creds = fenv.provision(recipients=["night@reorder.example"])
    now = dt.datetime.now(dt.timezone.utc)
    first = fenv.event(creds, start=now - dt.timedelta(seconds=60))
    second = fenv.event(creds, start=now - dt.timedelta(seconds=30))
    for ev in (first, second):
        fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    messages = {ev["event_id"]: fenv.message(creds, ev) for ev in (first, second)}

    # An alert message that overtook its own analysis (e.g. a stray redelivery): dropped, not retried.
    assert alert.handle_analyzed(data=_follow_on(creds, second)) == "dropped:unknown_event"
    # Ingest, analyse and alert the later event first, then the earlier one; then stale redeliveries.
    for ev in (second, first):
        data, attrs = messages[ev["event_id"]]
        assert ingest.handle_edge_event(data=data, attributes=attrs, message_id=f"m-{ev['event_id']}") == "created"
    assert alert.handle_analyzed(data=_follow_on(creds, first)) == "dropped:not_analyzed"
    for ev in (second, first):
        assert analyze.handle_ingested(data=_follow_on(creds, ev)).startswith("analyzed:")
    for ev in (second, first):
        assert alert.handle_analyzed(data=_follow_on(creds, ev)) == "sent:1"
    for ev in (first, second):  # late redeliveries of every stage change nothing
        data, attrs = messages[ev["event_id"]]
        assert ingest.handle_edge_event(data=data, attributes=attrs, message_id=f"m-{ev['event_id']}") == "duplicate"
        assert analyze.handle_ingested(data=_follow_on(creds, ev)) == "already_analyzed"
        assert alert.handle_analyzed(data=_follow_on(creds, ev)) in ("sent:0", "not_alerted")

    events = list(pipeline.tenant_ref(creds["tenant_id"]).collection("events").stream())
    assert sorted(s.id for s in events) == sorted([first["event_id"], second["event_id"]])
    mails = [m for m in smtp_sink.messages() if m["To"] == "night@reorder.example"]
    assert sorted(m["X-Vigint-Event-Id"] for m in mails) == sorted([first["event_id"], second["event_id"]])
