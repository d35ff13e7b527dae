"""ingest: stale/future/replayed messages, concurrent deliveries, usage counters and the dead-letter topic,
against the real Firestore and Pub/Sub emulators."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
import uuid

import pytest

from tests.functions.conftest import FIXTURE_START, start_and_join
from infra.local.stack import DEAD_LETTERS


def _drops() -> dict:
    from vigint import clients

    snap = clients.firestore().collection("stats").document("ingest_drops").get()
    return snap.to_dict() if snap.exists else {}


def _events(tenant_id: str) -> list:
    from vigint import pipeline

    return list(pipeline.tenant_ref(tenant_id).collection("events").stream())


@pytest.fixture
def week_limit(fenv, monkeypatch):
    """The production limits: 7 days of age, 300 s of clock skew."""
    from vigint import clients

    monkeypatch.setenv("VIGINT_EVENT_MAX_AGE_SECONDS", str(7 * 24 * 3600))
    monkeypatch.setenv("VIGINT_EVENT_MAX_FUTURE_SECONDS", "300")
    clients.reset()


def test_stale_and_future_events_are_dropped_with_their_reason(fenv, week_limit):
    from vigint import ingest

    creds = fenv.provision()
    end = FIXTURE_START + dt.timedelta(seconds=2)  # the fixture event's end_time
    cases = [
        (end + dt.timedelta(days=7, seconds=1), "dropped:stale_event"),     # just over 7 days old
        (end - dt.timedelta(seconds=301), "dropped:future_event"),          # ends 301 s in the future
    ]
    for now, expected in cases:
        data, attrs = fenv.message(creds, fenv.event(creds))
        assert ingest.handle_edge_event(data=data, attributes=attrs, now=now) == expected
    assert _events(creds["tenant_id"]) == []
    drops = _drops()
    assert (drops.get("stale_event"), drops.get("future_event"), drops.get("total")) == (1, 1, 2)
    # Inside both limits the same kind of message is stored.
    ok_now = end + dt.timedelta(days=7) - dt.timedelta(seconds=1)
    data, attrs = fenv.message(creds, fenv.event(creds))
    assert ingest.handle_edge_event(data=data, attributes=attrs, now=ok_now) == "created"
    skewed = end - dt.timedelta(seconds=299)
    data, attrs = fenv.message(creds, fenv.event(creds))
    assert ingest.handle_edge_event(data=data, attributes=attrs, now=skewed) == "created"
    assert len(fenv.pull("ingested")) == 2


def test_replay_under_a_new_message_id_is_dropped_redelivery_is_not(fenv):
    from vigint import ingest

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="111") == "created"
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="111") == "duplicate"  # redelivery
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="999") == "dropped:replayed"
    # Same id, other content (signed by the same device): a conflict, not an overwrite.
    other = {**ev, "labels": ["car"], "max_count": {"car": 1}}
    data2, attrs2 = fenv.message(creds, other)
    assert ingest.handle_edge_event(data=data2, attributes=attrs2, message_id="112") == "dropped:event_id_conflict"
    stored = _events(creds["tenant_id"])
    assert len(stored) == 1 and stored[0].to_dict()["labels"] == ["person"]
    drops = _drops()
    assert (drops.get("replayed"), drops.get("event_id_conflict")) == (1, 1)
    assert len(fenv.pull("ingested")) == 1


def test_concurrent_deliveries_store_one_event_and_publish_once(fenv):
    """The same message delivered by several threads at once; the losers of the publish claim raise
    ``InProgress``, also when the emulator aborts their claim transaction on every attempt, and a commit the
    emulator aborts raises its transient error (both seen on a loaded machine): Pub/Sub redelivers them, and
    the redeliveries store and publish nothing more."""
    from google.api_core import exceptions as gexc

    from vigint import ingest, pipeline, usage

    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    n = 6
    barrier = threading.Barrier(n)
    outcomes: list = []
    lock = threading.Lock()

    def deliver():
        barrier.wait()
        try:
            out = ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1")
        except pipeline.InProgress:
            out = "in_progress"
        except gexc.GoogleAPICallError:  # transient, e.g. the emulator aborting a contended commit
            out = "transient"
        except Exception as exc:  # noqa: BLE001 - any other failure is an outcome the test rejects
            out = repr(exc)
        with lock:
            outcomes.append(out)

    start_and_join([threading.Thread(target=deliver) for _ in range(n)])
    # The delivery that created the document may still find another delivery publishing the follow-on
    # and answer "in progress" (Pub/Sub then redelivers it): "created" at most once (maybe never), one publish.
    assert outcomes.count("created") <= 1, outcomes
    assert set(outcomes) <= {"created", "duplicate", "in_progress", "transient"}, outcomes
    redelivered = [ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1")
                   for _ in range(outcomes.count("in_progress") + outcomes.count("transient"))]
    assert set(redelivered) <= {"created", "duplicate"} and (outcomes + redelivered).count("created") <= 1
    assert len(_events(creds["tenant_id"])) == 1
    assert len(fenv.pull("ingested")) == 1
    counters = usage.get(creds["tenant_id"])
    assert counters["events"] == 1 and counters["clip_bytes"] == len(fenv.media["clip"])


def test_event_document_carries_expire_at_for_the_ttl_backstop(fenv):
    from vigint import ingest, pipeline

    creds = fenv.provision()
    pipeline.tenant_ref(creds["tenant_id"]).update({"retention_days": 3})
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)
    ingest.handle_edge_event(data=data, attributes=attrs)
    doc = pipeline.event_ref(creds["tenant_id"], ev["event_id"]).get().to_dict()
    assert doc["expire_at"] == FIXTURE_START + dt.timedelta(seconds=2, days=3)


def test_a_message_that_always_fails_transiently_ends_in_the_dead_letter_topic(stack, fenv, monkeypatch):
    """Real push delivery by the Pub/Sub emulator to the real ingest entry point (functions-framework, served
    over HTTP in this process) whose follow-on topic does not exist: every delivery fails transiently (500),
    and after 5 attempts the subscription's dead-letter policy moves the message to ``edge-events-dead``."""
    import functions_framework
    from google.cloud import pubsub_v1
    from werkzeug.serving import make_server

    from vigint import clients

    monkeypatch.setenv("VIGINT_INGESTED_TOPIC", f"missing-{uuid.uuid4().hex[:8]}")
    clients.reset()
    creds = fenv.provision()
    ev = fenv.event(creds)
    data, attrs = fenv.message(creds, ev)

    app = functions_framework.create_app(target="ingest", source="functions/main.py", signature_type="cloudevent")
    hits: list[int] = []

    def counting(environ, start_response):
        hits.append(1)
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    project = stack.project
    topic = publisher.topic_path(project, f"test-edge-{uuid.uuid4().hex[:8]}")
    sub = subscriber.subscription_path(project, f"test-edge-push-{uuid.uuid4().hex[:8]}")
    dead_sub = subscriber.subscription_path(project, "edge-events-dead-pull")
    # The stack's own ingest subscription dead-letters to the same topic.
    policy = subscriber.get_subscription(request={"subscription": subscriber.subscription_path(project, "ingest-push")})
    assert policy.dead_letter_policy.dead_letter_topic == publisher.topic_path(project, "edge-events-dead")
    assert policy.dead_letter_policy.max_delivery_attempts == DEAD_LETTERS["ingest-push"][1]
    publisher.create_topic(name=topic)
    subscriber.create_subscription(request={
        "name": sub, "topic": topic, "ack_deadline_seconds": 10,
        "push_config": {"push_endpoint": f"http://127.0.0.1:{server.server_port}/"},
        "dead_letter_policy": {"dead_letter_topic": publisher.topic_path(project, "edge-events-dead"),
                               "max_delivery_attempts": 5},
        "retry_policy": {"minimum_backoff": {"seconds": 0}, "maximum_backoff": {"seconds": 1}},
    })
    try:
        publisher.publish(topic, data, **attrs).result(timeout=30)
        dead = None
        deadline = time.monotonic() + 90
        while dead is None and time.monotonic() < deadline:
            resp = subscriber.pull(request={"subscription": dead_sub, "max_messages": 50}, timeout=10)
            if resp.received_messages:
                subscriber.acknowledge(request={"subscription": dead_sub,
                                                "ack_ids": [m.ack_id for m in resp.received_messages]})
            for m in resp.received_messages:
                if m.message.attributes.get("event_id") == ev["event_id"]:
                    dead = m.message
            time.sleep(0.3)
        assert dead is not None, f"not dead-lettered within 90 s ({len(hits)} deliveries)"
        assert dead.data == data and dead.attributes["signature"] == attrs["signature"]
        assert dead.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
        assert len(hits) == 5
        # The event itself was stored on the first attempt and stays stored once.
        assert [d.id for d in _events(creds["tenant_id"])] == [ev["event_id"]]
    finally:
        subscriber.delete_subscription(request={"subscription": sub})
        publisher.delete_topic(request={"topic": topic})
        server.shutdown()
