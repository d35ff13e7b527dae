"""Delivery from the spool to the cloud, against the real local stack (edge_api in functions-framework,
fake-gcs-server, the Pub/Sub emulator), plus the API client's retry rules against a small local HTTP
server and the publisher's access-token path."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.edge.lifecycle_helpers import QuietHandler, edge_events_pull, local_http_server, provision_device
from vigint_edge.cloud.api_client import (
    AuthError,
    EdgeApiClient,
    PermanentApiError,
    PublishCredentials,
    TransientApiError,
)
from vigint_edge.recording.clip import ClipWriter, encode_snapshot
from vigint_edge.delivery.deliverer import Deliverer, Outcome
from vigint_edge.event_model import ClipRef, EdgeEvent, SnapshotRef, new_event_id, object_name
from vigint_edge.delivery.publisher import EventPublisher, sign_message
from vigint_edge.delivery.spool import Spool

SECRET = "s3cr3t-device-key-never-logged"


# ----------------------------------------------------------------------------------------- helpers
def make_spooled_event(spool: Spool, tmp_path: Path, tenant: str, device: str, i: int,
                       when: datetime | None = None) -> EdgeEvent:
    """A real event: an H.264 clip and a JPEG snapshot of a moving square, put into the spool."""
    when = when or datetime.now(timezone.utc) + timedelta(milliseconds=i)
    eid = new_event_id(when)
    clip_path = tmp_path / f"clip-{i}.mp4"
    frames = []
    with ClipWriter(clip_path, 160, 120, fps=10.0) as w:
        for k in range(10):
            f = np.full((120, 160, 3), 30 * i % 255, np.uint8)
            f[40:80, 10 * k:10 * k + 30] = 255
            frames.append(f)
            w.write(f, k / 10)
    jpeg = encode_snapshot(frames[5], boxes=[("person", 0.9, (48, 36, 80, 72))])
    event = EdgeEvent(
        event_id=eid, tenant_id=tenant, device_id=device, camera_id="lobby", kind="detection",
        severity="alert", labels=["person"], start_time=when, end_time=when + timedelta(seconds=1),
        top_score=0.9, max_count={"person": 1},
        detections=[{"label": "person", "score": 0.9, "box": [0.3, 0.3, 0.5, 0.6], "time": when}],
        clip=ClipRef.from_info(w.info, object_name(tenant, device, eid, "clip.mp4")),
        snapshot=SnapshotRef.for_jpeg(jpeg, object_name(tenant, device, eid, "snapshot.jpg"), when),
    )
    spool.put(event, clip_path, jpeg)
    return event


def pull_all(subscriber, subscription: str, count: int, timeout_s: float = 30.0):
    """Synchronous pull until ``count`` messages arrived (acked), in the order received."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=10)
        if resp.received_messages:
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [m.ack_id for m in resp.received_messages]})
            got.extend(m.message for m in resp.received_messages)
    return got


@pytest.fixture
def device(stack):
    """A freshly provisioned tenant/device with its credentials."""
    stack.reset()
    return provision_device(stack, "t")


@pytest.fixture
def edge_events_subscription(stack):
    """A pull subscription on ``edge-events`` made for this test (deleted afterwards)."""
    with edge_events_pull(stack, "test-delivery") as pull:
        yield pull


def gcs_bucket(stack):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)


def deliverer_for(device: dict, stack, spool: Spool, session=None) -> Deliverer:
    api = EdgeApiClient(stack.urls["edge_api"], device["tenant_id"], device["device_id"], device["secret"],
                        backoff_initial_s=0.05, backoff_max_s=0.2, max_attempts=3)
    publisher = EventPublisher.from_api(api, timeout_s=20)
    return Deliverer(spool, api, publisher, device["key_version"], device["secret"], session=session,
                     max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2)


# ----------------------------------------------------------------------------- against the stack
def test_three_events_are_uploaded_and_published_in_order(stack, device, edge_events_subscription, tmp_path,
                                                          caplog):
    from vigint.device_keys import verify
    from vigint.schema import EdgeEvent as CloudEdgeEvent

    caplog.set_level(logging.DEBUG)
    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    t, d = device["tenant_id"], device["device_id"]
    events = [make_spooled_event(spool, tmp_path, t, d, i) for i in range(3)]
    expected_bytes = {}
    for e in events:
        item = next(p for p in spool.pending() if p.event_id == e.event_id)
        expected_bytes[e.clip.object] = item.clip_path.read_bytes()
        expected_bytes[e.snapshot.object] = item.snapshot_path.read_bytes()

    deliverer = deliverer_for(device, stack, spool)
    assert deliverer.deliver_pending() == 3
    assert spool.pending() == [] and spool.failed() == []

    bucket = gcs_bucket(stack)
    for name, data in expected_bytes.items():
        blob = bucket.get_blob(name)
        assert blob is not None, name
        assert blob.download_as_bytes() == data
        assert blob.content_type == ("video/mp4" if name.endswith(".mp4") else "image/jpeg")

    messages = pull_all(subscriber, subscription, 3)
    assert [m.attributes["event_id"] for m in messages] == [e.event_id for e in events]
    for m, e in zip(messages, events):
        assert m.attributes["tenant_id"] == t and m.attributes["device_id"] == d
        assert m.attributes["schema_version"] == "1"
        assert m.attributes["key_version"] == str(device["key_version"])
        assert verify(device["secret"], m.data, m.attributes["signature"])  # the cloud's own check
        assert m.attributes["signature"] == sign_message(m.data, device["secret"])
        published = EdgeEvent.model_validate_json(m.data)
        # The refs now carry the base64 MD5 of what was uploaded (the MD5 the bucket computed) ...
        for ref in (published.clip, published.snapshot):
            assert ref.md5 == bucket.get_blob(ref.object).md5_hash
        # ... and are otherwise the spooled event's.
        assert published.model_copy(update={"clip": published.clip.model_copy(update={"md5": None}),
                                            "snapshot": published.snapshot.model_copy(update={"md5": None})}) == e
        CloudEdgeEvent.parse(m.data)  # the cloud's schema accepts it
    assert device["secret"] not in caplog.text
    assert "X-Goog-Signature=REDACTED" in caplog.text  # urllib3 logged the PUTs at DEBUG ...
    assert not re.search(r"X-Goog-Signature=(?!REDACTED)", caplog.text)  # ... never the signature


def test_interrupted_upload_resumes_with_only_the_missing_file(stack, device, edge_events_subscription, tmp_path):
    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    event = make_spooled_event(spool, tmp_path, device["tenant_id"], device["device_id"], 0)
    put_paths = []

    class Session(requests.Session):
        """The network drops every upload of snapshot.jpg while ``fail`` is set."""

        fail = True

        def request(self, method, url, *args, **kwargs):
            if method == "PUT":
                path = requests.utils.urlparse(url).path
                put_paths.append(path)
                if self.fail and path.endswith("/snapshot.jpg"):
                    raise requests.ConnectionError("network down")
            return super().request(method, url, *args, **kwargs)

    session = Session()
    deliverer = deliverer_for(device, stack, spool, session=session)
    item = spool.pending()[0]
    assert deliverer.attempt(item) is Outcome.RETRY
    state = spool.load_state(item)
    assert state.uploaded == ["clip.mp4"] and not state.published and state.attempts == 1
    assert sum(p.endswith("/snapshot.jpg") for p in put_paths) == 3  # retried up to max_attempts

    # A restart: new Spool and Deliverer objects on the same directory.
    session.fail = False
    put_paths.clear()
    spool2 = Spool(tmp_path / "spool", max_bytes=10**8)
    assert deliverer_for(device, stack, spool2, session=session).deliver_pending() == 1
    assert [p.rsplit("/", 1)[1] for p in put_paths] == ["snapshot.jpg"]
    messages = pull_all(subscriber, subscription, 1)
    assert [m.attributes["event_id"] for m in messages] == [event.event_id]
    assert gcs_bucket(stack).get_blob(event.clip.object) is not None
    assert gcs_bucket(stack).get_blob(event.snapshot.object) is not None


def test_reupload_after_a_lost_answer_uploads_only_what_is_not_stored(stack, device, edge_events_subscription,
                                                                      tmp_path):
    """The clip's PUT reaches the bucket but its answer is lost (and the snapshot's PUT fails): the next attempt
    finds the clip stored with this file's size and MD5 (``stored`` of /v1/uploads), takes it as uploaded
    without a new URL or PUT, uploads the snapshot and publishes with both MD5s."""
    import base64
    import hashlib

    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    event = make_spooled_event(spool, tmp_path, device["tenant_id"], device["device_id"], 0)
    puts = []

    class Session(requests.Session):
        lose = True

        def request(self, method, url, *args, **kwargs):
            if method == "PUT":
                name = requests.utils.urlparse(url).path.rsplit("/", 1)[1]
                puts.append(name)
                if self.lose and name == "snapshot.jpg":
                    raise requests.ConnectionError("network down")
                resp = super().request(method, url, *args, **kwargs)
                if self.lose and name == "clip.mp4":
                    assert resp.status_code == 200
                    raise requests.ConnectionError("connection reset before the answer")  # stored, answer lost
                return resp
            return super().request(method, url, *args, **kwargs)

    session = Session()
    deliverer = deliverer_for(device, stack, spool, session=session)
    item = spool.pending()[0]
    assert deliverer.attempt(item) is Outcome.RETRY
    assert spool.load_state(item).uploaded == []  # neither answer arrived
    clip_bytes = item.clip_path.read_bytes()

    session.lose = False
    puts.clear()
    assert deliverer.attempt(item) is Outcome.DELIVERED
    assert puts == ["snapshot.jpg"]  # no second PUT of the clip
    (message,) = pull_all(subscriber, subscription, 1)
    body = json.loads(message.data)
    bucket = gcs_bucket(stack)
    assert body["clip"]["md5"] == base64.b64encode(hashlib.md5(clip_bytes).digest()).decode()
    assert body["clip"]["md5"] == bucket.get_blob(event.clip.object).md5_hash
    assert body["snapshot"]["md5"] == bucket.get_blob(event.snapshot.object).md5_hash


def test_a_412_is_already_stored_only_with_the_same_bytes_else_a_conflict(stack, device, edge_events_subscription,
                                                                          tmp_path, caplog):
    """Storage answers 412 to a PUT (``x-goog-if-generation-match: 0``: the object exists; fake-gcs-server does
    not enforce it, so the session answers as Cloud Storage would once the object is there). The clip stored
    is this very file: uploaded. The snapshot stored is other bytes: a conflict, logged and recorded, never
    replaced and never retried; the message still goes out with this file's own hashes (ingest flags it)."""
    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    event = make_spooled_event(spool, tmp_path, device["tenant_id"], device["device_id"], 0)
    item = spool.pending()[0]
    bucket = gcs_bucket(stack)
    bucket.blob(event.snapshot.object).upload_from_string(b"someone else's jpeg", content_type="image/jpeg")
    puts = []

    class Session(requests.Session):
        """The first PUT of each file gets there at the same moment as an identical earlier upload: 412."""

        def request(self, method, url, *args, **kwargs):
            if method == "PUT":
                name = requests.utils.urlparse(url).path.rsplit("/", 1)[1]
                puts.append(name)
                assert kwargs["headers"]["x-goog-if-generation-match"] == "0"
                if name == "clip.mp4":
                    super().request(method, url, *args, **kwargs)  # stored by "the earlier attempt"
                    resp = requests.Response()
                    resp.status_code, resp._content = 412, b"PreconditionFailed"
                    return resp
            return super().request(method, url, *args, **kwargs)

    caplog.set_level(logging.INFO, logger="vigint_edge.delivery.deliverer")
    deliverer = deliverer_for(device, stack, spool, session=Session())
    assert deliverer.attempt(item) is Outcome.DELIVERED
    assert puts == ["clip.mp4"]  # the snapshot was listed as stored: no URL, no PUT
    assert re.search(r"CONFLICT: \S+/snapshot\.jpg is already stored with other content", caplog.text)
    assert re.search(r"\S+/clip\.mp4 is already stored \(\d+ bytes, same MD5\)", caplog.text)
    (message,) = pull_all(subscriber, subscription, 1)
    body = json.loads(message.data)
    assert body["clip"]["md5"] == bucket.get_blob(event.clip.object).md5_hash
    assert body["snapshot"]["md5"] != bucket.get_blob(event.snapshot.object).md5_hash  # the claim is the device's
    assert bucket.get_blob(event.snapshot.object).download_as_bytes() == b"someone else's jpeg"  # not replaced


def test_evicted_clip_is_published_as_null(stack, device, edge_events_subscription, tmp_path):
    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=20_000)  # a clip here is ~5-10 kB
    t, d = device["tenant_id"], device["device_id"]
    events = [make_spooled_event(spool, tmp_path, t, d, i) for i in range(4)]
    pending = spool.pending()
    evicted = [p.event_id for p in pending if spool.load_state(p).clip_evicted]
    assert evicted and evicted == [e.event_id for e in events[:len(evicted)]]

    assert deliverer_for(device, stack, spool).deliver_pending() == 4
    messages = pull_all(subscriber, subscription, 4)
    by_id = {m.attributes["event_id"]: json.loads(m.data) for m in messages}
    for e in events:
        body = by_id[e.event_id]
        if e.event_id in evicted:
            assert body["clip"] is None
            assert gcs_bucket(stack).get_blob(e.clip.object) is None
        else:
            assert body["clip"]["object"] == e.clip.object
        assert body["snapshot"]["object"] == e.snapshot.object


def test_wrong_secret_keeps_items_pending(stack, device, tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    make_spooled_event(spool, tmp_path, device["tenant_id"], device["device_id"], 0)
    bad = dict(device, secret="not-the-secret")
    deliverer = deliverer_for(bad, stack, spool)
    assert deliverer.deliver_pending() == 0
    assert deliverer.last_pass_failed
    assert len(spool.pending()) == 1 and spool.failed() == []
    assert "401" in spool.load_state(spool.pending()[0]).last_error


def test_run_loop_delivers_and_stops(stack, device, edge_events_subscription, tmp_path):
    subscriber, subscription = edge_events_subscription
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    deliverer = deliverer_for(device, stack, spool)
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), kwargs={"idle_wait_s": 5.0}, daemon=True)
    thread.start()
    event = make_spooled_event(spool, tmp_path, device["tenant_id"], device["device_id"], 0)
    deliverer.wake()
    messages = pull_all(subscriber, subscription, 1, timeout_s=20)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [m.attributes["event_id"] for m in messages] == [event.event_id]
    assert spool.pending() == []


# ------------------------------------------------------------------ a peer that misbehaves on purpose
class ScriptedServer:
    """A tiny HTTP server that answers each POST with the next scripted (status, body, headers)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[tuple[str, dict, bytes]] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, dict(self.headers), body))
                status, answer, headers = outer.script.pop(0) if outer.script else (500, {}, {})
                self.reply(status, json.dumps(answer).encode(), "application/json", headers)

        self.httpd, self.url = local_http_server(Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


UPLOADS_OK = {"uploads": [{"name": "snapshot.jpg", "object": "tenants/demo/devices/nuc-1/events/evt_1234567/snapshot.jpg",
                           "url": "http://127.0.0.1:1/b/o?X-Goog-Signature=abc", "method": "PUT",
                           "headers": {"Content-Type": "image/jpeg"}, "expires_at": "2026-11-22T06:15:00Z"}]}
FILES = [{"name": "snapshot.jpg", "content_type": "image/jpeg", "bytes": 10}]


def client(url: str, **kw) -> EdgeApiClient:
    return EdgeApiClient(url, "demo", "nuc-1", SECRET, timeout=5, backoff_initial_s=0.01, backoff_max_s=0.05, **kw)


def test_api_client_retries_a_500_then_succeeds(caplog):
    caplog.set_level(logging.DEBUG)
    with ScriptedServer([(500, {"error": "boom"}, {}), (200, UPLOADS_OK, {})]) as srv:
        targets = client(srv.url).request_uploads("evt_1234567", FILES)
    assert len(srv.requests) == 2
    assert targets[0].object.endswith("/snapshot.jpg")
    assert targets[0].headers == {"Content-Type": "image/jpeg"}
    path, headers, body = srv.requests[0]
    assert path == "/v1/uploads"
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["X-Vigint-Tenant"] == "demo" and headers["X-Vigint-Device"] == "nuc-1"
    assert json.loads(body) == {"event_id": "evt_1234567", "files": FILES}
    assert SECRET not in caplog.text and "X-Goog-Signature" not in caplog.text
    assert SECRET not in repr(targets) and "X-Goog-Signature" not in repr(targets)


def test_api_client_honours_429_retry_after():
    with ScriptedServer([(429, {}, {"Retry-After": "1"}), (200, {"config": {}, "commands": []}, {})]) as srv:
        started = time.monotonic()
        assert client(srv.url).heartbeat({"version": "x"}) == {"config": {}, "commands": []}
        assert time.monotonic() - started >= 0.04  # capped at backoff_max_s, but it did wait
    assert len(srv.requests) == 2


def test_api_client_does_not_retry_a_400():
    with ScriptedServer([(400, {"error": "bad name", "field": "files.0.name"}, {}), (200, UPLOADS_OK, {})]) as srv:
        with pytest.raises(PermanentApiError) as err:
            client(srv.url).request_uploads("evt_1234567", FILES)
    assert len(srv.requests) == 1
    assert err.value.status == 400 and err.value.field == "files.0.name"
    assert not isinstance(err.value, AuthError)


def test_api_client_401_is_an_auth_error_and_retries_are_bounded():
    with ScriptedServer([(401, {"error": "unauthorized"}, {})]) as srv:
        with pytest.raises(AuthError):
            client(srv.url).publish_credentials()
    with ScriptedServer([(503, {}, {})] * 10) as srv:
        with pytest.raises(TransientApiError) as err:
            client(srv.url, max_attempts=4).heartbeat({})
    assert len(srv.requests) == 4 and err.value.status == 503
    with ScriptedServer([]) as srv:
        dead = srv.url
    with pytest.raises(TransientApiError):
        client(dead, max_attempts=2).heartbeat({})


def test_permanent_refusal_moves_items_to_failed_and_continues(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**8)
    for i in range(2):
        make_spooled_event(spool, tmp_path, "demo", "nuc-1", i)
    refusal = (413, {"error": "clip.mp4 is larger than 536870912 bytes", "field": "files.0.bytes"}, {})

    def no_publish():
        raise AssertionError("nothing may be published for a refused item")

    with ScriptedServer([refusal, refusal]) as srv:
        deliverer = Deliverer(spool, client(srv.url), EventPublisher("projects/p/topics/edge-events", no_publish),
                              1, SECRET)
        assert deliverer.deliver_pending() == 0
    assert len(srv.requests) == 2
    assert spool.pending() == [] and len(spool.failed()) == 2
    for item in spool.failed():
        assert item.clip_path.exists() and item.snapshot_path.exists()
        assert "413" in spool.load_state(item).last_error


# ------------------------------------------------------------------------------ publisher: tokens
def test_publisher_uses_the_vended_token_and_refreshes_it_before_expiry(monkeypatch):
    import google.oauth2.credentials

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    now = datetime.now(timezone.utc)
    vended = [
        # Within google-auth's 3 min 45 s refresh threshold: must be replaced before the first request.
        PublishCredentials(topic="projects/p/topics/edge-events", mode="access_token",
                           access_token="token-1", expires_at=now + timedelta(minutes=3)),
        PublishCredentials(topic="projects/p/topics/edge-events", mode="access_token",
                           access_token="token-2", expires_at=now + timedelta(hours=1)),
    ]
    calls = []

    def provider():
        calls.append(1)
        return vended[len(calls) - 1]

    built = {}

    def factory(credentials):
        built["credentials"] = credentials
        return object()

    publisher = EventPublisher(None, provider, client_factory=factory)
    publisher._get_client()
    creds = built["credentials"]
    assert isinstance(creds, google.oauth2.credentials.Credentials)
    assert creds.token == "token-1" and publisher.topic_path == "projects/p/topics/edge-events"
    assert not creds.valid  # near expiry

    headers: dict = {}
    creds.before_request(None, "POST", "https://pubsub.googleapis.com/v1/x:publish", headers)
    assert headers["authorization"] == "Bearer token-2"
    assert len(calls) == 2 and creds.valid
    assert creds.expiry == vended[1].expires_at.astimezone(timezone.utc).replace(tzinfo=None)

    headers = {}
    creds.before_request(None, "POST", "https://pubsub.googleapis.com/v1/x:publish", headers)
    assert headers["authorization"] == "Bearer token-2" and len(calls) == 2  # still fresh: no fetch


def test_publisher_refuses_emulator_mode_without_an_emulator(monkeypatch):
    from vigint_edge.delivery.publisher import PublishError

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    publisher = EventPublisher(None, lambda: PublishCredentials(topic="projects/p/topics/edge-events",
                                                                mode="emulator"))
    with pytest.raises(PublishError, match="PUBSUB_EMULATOR_HOST"):
        publisher.credentials()


def test_signature_matches_the_clouds_check():
    from vigint.device_keys import sign, verify

    data = b'{"schema_version":1}'
    assert sign_message(data, SECRET) == sign(SECRET, data)
    assert verify(SECRET, data, sign_message(data, SECRET))
    assert not verify(SECRET, data + b" ", sign_message(data, SECRET))
