"""Helpers for the functions' tests: private follow-on topics, provisioning, real media, signed messages.

The session stack also runs every function as a process with push subscriptions on the standard topics.
So that in-process handler calls here are not chased by those processes, ``fenv`` points the in-process
functions at private follow-on topics (plain configuration: ``VIGINT_INGESTED_TOPIC`` /
``VIGINT_ANALYZED_TOPIC``) that only have pull subscriptions, which the tests read to count publishes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import uuid
import warnings
from dataclasses import dataclass, field

import pytest


def _h264_clip(frames: int = 20, width: int = 160, height: int = 120, fps: int = 10) -> bytes:
    """A real H.264 mp4 (a moving bright square on grey), made with PyAV."""
    import av
    import numpy as np

    import tempfile
    from pathlib import Path

    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "clip.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = np.full((height, width, 3), 90, dtype=np.uint8)
            x = (i * 6) % (width - 30)
            img[40:80, x:x + 30] = (230, 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = path.read_bytes()
    tmp.cleanup()
    return data


def _jpeg(width: int = 160, height: int = 120) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (90, 90, 90))
    ImageDraw.Draw(img).rectangle([40, 40, 70, 80], fill=(230, 200, 40))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


# start_time of ``Fenv.event``: 06:00 UTC on the day before the run, so that fixtures are as old as real events
# (hours, not months) on whatever day the suite runs, always at the same time of day. Tests that need another
# instant pin the clock (``now=``) relative to it.
FIXTURE_START = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).replace(hour=6, minute=0, second=0,
                                                                                   microsecond=0)


def start_and_join(threads: list[threading.Thread], timeout_s: float = 60.0) -> None:
    """Starts every thread, then joins each in turn (at most ``timeout_s`` seconds each): deliveries at once."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)


def bucket_objects(prefix: str) -> list[str]:
    """The names of the bucket's objects under ``prefix``, sorted (fake-gcs-server)."""
    from vigint import clients, config

    return sorted(b.name for b in clients.storage().list_blobs(config.settings().bucket, prefix=prefix))


def all_docs(ref) -> list[str]:
    """Every document path under a document (recursively), the document itself included if it exists."""
    out = [ref.path] if ref.get().exists else []
    for coll in ref.collections():
        for doc in coll.list_documents():
            out.extend(all_docs(doc))
    return out


@pytest.fixture(scope="session")
def media() -> dict:
    """``{"clip": mp4 bytes (H.264), "snapshot": JPEG bytes}``, made once."""
    return {"clip": _h264_clip(), "snapshot": _jpeg()}


@dataclass
class Fenv:
    """What a test gets from ``fenv``."""

    env: dict
    topics: dict  # "ingested"/"analyzed" -> topic id
    subscriptions: dict  # same keys -> subscription path
    media: dict
    _subscriber: object = field(repr=False, default=None)

    def pull(self, which: str, wait_s: float = 1.0) -> list:
        """Every message on the private follow-on topic so far (acknowledged): list of PubsubMessage."""
        import time

        got, deadline = [], time.monotonic() + wait_s
        while True:
            with warnings.catch_warnings():  # return_immediately is deprecated but the emulator honours it
                warnings.simplefilter("ignore", DeprecationWarning)
                resp = self._subscriber.pull(
                    request={"subscription": self.subscriptions[which], "max_messages": 100,
                             "return_immediately": True},
                    timeout=10,
                )
            if resp.received_messages:
                self._subscriber.acknowledge(
                    request={"subscription": self.subscriptions[which],
                             "ack_ids": [m.ack_id for m in resp.received_messages]}
                )
                got.extend(m.message for m in resp.received_messages)
                continue
            if time.monotonic() >= deadline:
                return got
            time.sleep(0.1)

    def provision(self, tenant_id: str | None = None, device_id: str = "nuc-1", recipients=(), threshold: int = 1,
                  **tenant_kw) -> dict:
        """Creates a tenant (unique id by default) and a device; returns the device credentials."""
        from vigint import provisioning

        tenant_id = tenant_id or f"t-{uuid.uuid4().hex[:10]}"
        from vigint import pipeline

        if not pipeline.tenant_ref(tenant_id).get().exists:
            provisioning.create_tenant(tenant_id, tenant_id.title(), list(recipients), threshold=threshold, **tenant_kw)
        return provisioning.create_device(tenant_id, device_id, device_id)

    def upload_media(self, tenant_id: str, device_id: str, event_id: str) -> None:
        """Puts the clip and snapshot where the event says they are (straight into fake-gcs-server)."""
        from vigint import clients, config
        from vigint.schema import event_prefix

        bucket = clients.storage().bucket(config.settings().bucket)
        prefix = event_prefix(tenant_id, device_id, event_id)
        bucket.blob(prefix + "clip.mp4").upload_from_string(self.media["clip"], content_type="video/mp4")
        bucket.blob(prefix + "snapshot.jpg").upload_from_string(self.media["snapshot"], content_type="image/jpeg")

    def event(self, creds: dict, event_id: str | None = None, labels=("person",), camera_id: str = "lobby",
              start: dt.datetime | None = None, **overrides) -> dict:
        """A schema-valid event dict for the device ``creds`` (media hashes of the real clip/snapshot)."""
        from vigint.schema import event_prefix

        event_id = event_id or f"evt_{uuid.uuid4().hex[:26].upper()}"
        prefix = event_prefix(creds["tenant_id"], creds["device_id"], event_id)
        start = start or FIXTURE_START
        t = lambda s: (start + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
        ev = {
            "schema_version": 1, "event_id": event_id, "tenant_id": creds["tenant_id"],
            "device_id": creds["device_id"], "camera_id": camera_id, "kind": "detection", "severity": "alert",
            "labels": list(labels), "start_time": t(0), "end_time": t(2), "top_score": 0.87,
            "max_count": {label: 1 for label in labels},
            "detections": [{"label": label, "score": 0.87, "box": [0.1, 0.2, 0.4, 0.9], "time": t(1)} for label in labels],
            "zones": [],
            "clip": {"object": prefix + "clip.mp4", "content_type": "video/mp4", "bytes": len(self.media["clip"]),
                     "sha256": hashlib.sha256(self.media["clip"]).hexdigest(), "duration_s": 2.0, "frames": 20,
                     "width": 160, "height": 120, "fps": 10.0},
            "snapshot": {"object": prefix + "snapshot.jpg", "content_type": "image/jpeg",
                         "bytes": len(self.media["snapshot"]),
                         "sha256": hashlib.sha256(self.media["snapshot"]).hexdigest(), "time": t(1)},
        }
        ev.update(overrides)
        return ev

    @staticmethod
    def message(creds: dict, event: dict | bytes, **attr_overrides) -> tuple[bytes, dict]:
        """``(data, attributes)`` of an edge-events message signed with the device secret."""
        from vigint import device_keys

        data = event if isinstance(event, bytes) else json.dumps(event).encode()
        attrs = {"tenant_id": creds["tenant_id"], "device_id": creds["device_id"],
                 "event_id": event["event_id"] if isinstance(event, dict) else "evt_0000000000",
                 "schema_version": "1", "key_version": str(creds["key_version"]),
                 "signature": device_keys.sign(creds["secret"], data)}
        attrs.update(attr_overrides)
        return data, attrs

    def ingested_event(self, creds: dict, **event_kw) -> dict:
        """Uploads media and ingests a fresh event in-process; returns the event dict."""
        from vigint import ingest

        ev = self.event(creds, **event_kw)
        self.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
        data, attrs = self.message(creds, ev)
        assert ingest.handle_edge_event(data=data, attributes=attrs) == "created"
        return ev


@pytest.fixture
def fenv(functions_env, monkeypatch, media) -> Fenv:
    """``functions_env`` plus private follow-on topics with pull subscriptions (see module docstring)."""
    from google.cloud import pubsub_v1

    from vigint import clients

    project = functions_env["GOOGLE_CLOUD_PROJECT"]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topics, subs = {}, {}
    for which, var in (("ingested", "VIGINT_INGESTED_TOPIC"), ("analyzed", "VIGINT_ANALYZED_TOPIC")):
        topic_id = f"test-{which}-{suffix}"
        publisher.create_topic(name=publisher.topic_path(project, topic_id))
        sub = subscriber.subscription_path(project, f"test-{which}-pull-{suffix}")
        subscriber.create_subscription(request={"name": sub, "topic": publisher.topic_path(project, topic_id)})
        topics[which], subs[which] = topic_id, sub
        monkeypatch.setenv(var, topic_id)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    clients.reset()
    env = dict(functions_env)
    env.update({"VIGINT_INGESTED_TOPIC": topics["ingested"], "VIGINT_ANALYZED_TOPIC": topics["analyzed"]})
    yield Fenv(env=env, topics=topics, subscriptions=subs, media=media, _subscriber=subscriber)
    for which in subs:
        subscriber.delete_subscription(request={"subscription": subs[which]})
        publisher.delete_topic(request={"topic": publisher.topic_path(project, topics[which])})
    subscriber.close()


@pytest.fixture
def tapi(fenv):
    """A Flask test client of the real ``tenant_api`` entry point (functions-framework)."""
    import functions_framework

    app = functions_framework.create_app(target="tenant_api", source="functions/main.py", signature_type="http")
    return app.test_client()


@pytest.fixture
def edge(fenv):
    """A Flask test client of the real ``edge_api`` entry point (functions-framework)."""
    import functions_framework

    app = functions_framework.create_app(target="edge_api", source="functions/main.py", signature_type="http")
    return app.test_client()


@pytest.fixture
def gemini(fenv, monkeypatch):
    """The local Gemini fake (REST wire protocol) with the real google-genai client pointed at it; fast retries."""
    from tests.fakes.gemini_server import FakeGemini
    from vigint import clients

    with FakeGemini() as fake:
        monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-real")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
        monkeypatch.setenv("VIGINT_GEMINI_MODEL", "gemini-test-model")
        monkeypatch.setenv("VIGINT_GEMINI_RETRY_ATTEMPTS", "3")
        monkeypatch.setenv("VIGINT_GEMINI_RETRY_INITIAL_S", "0.05")
        clients.reset()
        yield fake
