"""Test helpers: a real lifecycle (start, updates, end) of a synthetic event spooled the way the pipeline does
it, with real MPEG-TS segments (``Segmenter``) cut from real libx264 packets (``ClipWriter``); on the local
stack, a freshly provisioned device and a pull on the ``edge-events`` topic; what the tests' small local HTTP
servers share (``QuietHandler``, ``local_http_server``)."""

from __future__ import annotations

import contextlib
import http.server
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vigint_edge.recording.clip import ClipWriter, encode_snapshot
from vigint_edge.event_model import (ClipRef, LifecycleMessage, SegmentRef, SnapshotRef, new_event_id,
                                     object_name, segment_name, snapshot_name)
from vigint_edge.recording.segments import Segmenter
from vigint_edge.delivery.spool import Spool


class SyntheticEvent:
    """Spools the messages of one event as its frames are "recorded" (``advance``), like ``CameraPipeline``.

    Args:
        spool: where the messages go.
        tenant, device, camera: ids.
        work: scratch directory.
        size: frame size in pixels; a bigger frame gives a bigger clip.
        seed: varies the picture.
    """

    def __init__(self, spool: Spool, tenant: str, device: str, camera: str, work: Path,
                 size: tuple[int, int] = (160, 120), seed: int = 0, segment_s: float = 1.0) -> None:
        self.spool, self.t, self.d, self.camera = spool, tenant, device, camera
        self.size, self.seed = size, seed
        self.wall0 = datetime.now(timezone.utc)
        self.event_id = new_event_id(self.wall0)
        work = Path(work) / self.event_id
        work.mkdir(parents=True)
        self.clip_path = work / "clip.mp4"
        self.writer = ClipWriter(self.clip_path, size[0], size[1], fps=10.0, g=round(segment_s * 10))
        self.segmenter = Segmenter(work / "live", self.writer.stream, segment_s, headers=self.writer.headers)
        self.writer.on_packet = self.segmenter.add
        self.frames = 0
        self.seq = -1
        self.segments_spooled = 0
        self.snapshot: SnapshotRef | None = None
        self.messages: list[LifecycleMessage] = []
        self.rng = np.random.default_rng(seed)

    def _frame(self) -> np.ndarray:
        w, h = self.size
        img = np.full((h, w, 3), (40 + 17 * self.seed) % 255, np.uint8)
        k = self.frames % max(1, w - 30)
        img[h // 3:h // 3 + 30, k:k + 30] = 255
        img[:, :, 1] = self.rng.integers(0, 40, (h, w), dtype=np.uint8) + img[:, :, 1] // 2  # some texture
        return img

    def advance(self, seconds: float) -> None:
        for _ in range(round(seconds * 10)):
            self.writer.write(self._frame(), self.frames / 10)
            self.frames += 1

    def _wall(self, t: float) -> datetime:
        return self.wall0 + timedelta(seconds=t)

    def send(self, phase: str, snapshot: bool = False, **extra) -> LifecycleMessage:
        seq = self.seq + 1
        files: dict = {}
        if snapshot:
            jpeg = encode_snapshot(self._frame(), boxes=[("person", 0.9, (10, 10, 60, 60))])
            name = snapshot_name(seq)
            self.snapshot = SnapshotRef.for_jpeg(jpeg, object_name(self.t, self.d, self.event_id, name),
                                                 self._wall(self.frames / 10))
            files[name] = jpeg
        new = self.segmenter.take_finished()
        for f in new:
            files[segment_name(f.index)] = f.path
        if phase == "end":
            extra["segment_count"] = self.segments_spooled + len(new)
            if extra.get("clip") is not None:
                files["clip.mp4"] = self.clip_path
        end_t = max(self.frames - 1, 0) / 10
        message = LifecycleMessage(
            event_id=self.event_id, tenant_id=self.t, device_id=self.d, camera_id=self.camera, phase=phase,
            seq=seq, severity="alert", labels=["person"], start_time=self.wall0, end_time=self._wall(end_t),
            first_seen=self.wall0, confirmed_at=self._wall(0.2), alert_first_seen=self.wall0,
            alert_confirmed_at=self._wall(0.2), top_score=0.9, max_count={"person": 1},
            detections=[{"label": "person", "score": 0.9, "box": [0.1, 0.1, 0.4, 0.5], "time": self.wall0}],
            snapshot=self.snapshot,
            segments=[SegmentRef(index=f.index, object=object_name(self.t, self.d, self.event_id,
                                                                   segment_name(f.index)),
                                 bytes=f.bytes, sha256=f.sha256, start_s=f.start_s, duration_s=f.duration_s)
                      for f in new],
            **extra,
        )
        self.spool.put_message(message, files)
        self.seq = seq
        self.segments_spooled += len(new)
        self.messages.append(message)
        return message

    def start(self) -> LifecycleMessage:
        self.advance(0.3)
        return self.send("start", snapshot=True)

    def update(self, seconds: float = 1.0) -> LifecycleMessage:
        before = self.segmenter.count
        while self.segmenter.count == before:
            self.advance(0.1)
        return self.send("update")

    def end(self, with_clip: bool = True) -> LifecycleMessage:
        info = self.writer.close()
        self.segmenter.close()
        clip = ClipRef.from_info(info, object_name(self.t, self.d, self.event_id, "clip.mp4")) if with_clip else None
        return self.send("end", snapshot=True, clip=clip)


def pull_messages(subscriber, subscription: str, until, timeout_s: float = 60.0) -> list:
    """Pulls (and acks) ``edge-events`` messages until ``until(messages so far)`` is true; returns them all."""
    got: list = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": subscription, "max_messages": 50}, timeout=10)
        if resp.received_messages:
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [m.ack_id for m in resp.received_messages]})
            got.extend(m.message for m in resp.received_messages)
        if until(got):
            return got
    raise AssertionError(f"pulled {len(got)} messages, not yet what was expected")


def provision_device(stack, tenant_prefix: str) -> dict:
    """A freshly provisioned tenant ``{tenant_prefix}-{8 hex}`` with device ``nuc-{same 8 hex}`` (alerts to
    ops@example.com): its credentials (``stack.provision``)."""
    suffix = uuid.uuid4().hex[:8]
    return stack.provision(f"{tenant_prefix}-{suffix}", f"nuc-{suffix}", ["ops@example.com"])


@contextlib.contextmanager
def edge_events_pull(stack, name_prefix: str) -> Iterator[tuple]:
    """A pull subscription ``{name_prefix}-{8 hex}`` on ``edge-events``, made now and deleted on leaving:
    ``(subscriber client, subscription path)``."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(stack.project, f"{name_prefix}-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(request={"name": path, "topic": f"projects/{stack.project}/topics/edge-events"})
    try:
        yield subscriber, path
    finally:
        subscriber.delete_subscription(request={"subscription": path})
        subscriber.close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """The request handler of a test's small local HTTP server: logs nothing; ``reply`` sends a whole answer."""

    def reply(self, status: int, data: bytes, content_type: str | None = None,
              headers: Mapping[str, str] | None = None) -> None:
        """The status line, ``Content-Type`` (when given), ``Content-Length``, ``headers`` in their order, then
        ``data``."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def local_http_server(handler: type) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A threading HTTP server of ``handler`` (a ``BaseHTTPRequestHandler`` class) on a free port of 127.0.0.1,
    not serving yet (``serve_forever`` is the caller's), and its base URL ``http://127.0.0.1:{port}``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
