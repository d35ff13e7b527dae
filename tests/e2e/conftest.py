"""Fixtures for the end-to-end tests: the real stack, the real model and video, synthetic events."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest



def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Polls ``predicate`` until it returns something truthy; returns that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def synthetic_event(spool, tenant_id: str, device_id: str, camera_id: str, tmp: Path, seconds: float = 2.0,
                    fps: float = 10.0, size: tuple[int, int] = (320, 240), seed: int = 0):
    """Puts one event with a real H.264 clip of noise frames (incompressible, so uploads take a moment)
    and a real JPEG snapshot into ``spool``; returns the ``EdgeEvent``."""
    from vigint_edge.recording.clip import ClipWriter, encode_snapshot
    from vigint_edge.event_model import ClipRef, DetectionRef, EdgeEvent, SnapshotRef, new_event_id, object_name

    rng = np.random.default_rng(seed)
    w, h = size
    start = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    event_id = new_event_id(start)
    writer = ClipWriter(tmp / f"{event_id}.mp4", width=w, height=h, fps=fps)
    frames = int(seconds * fps)
    for i in range(frames):
        writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), i / fps)
    info = writer.close()
    snap = encode_snapshot(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    event = EdgeEvent(
        event_id=event_id, tenant_id=tenant_id, device_id=device_id, camera_id=camera_id, kind="detection",
        severity="alert", labels=["person"], start_time=start, end_time=start + timedelta(seconds=seconds),
        top_score=0.9, max_count={"person": 1},
        detections=[DetectionRef(label="person", score=0.9, box=[0.1, 0.1, 0.3, 0.8], time=start)],
        clip=ClipRef.from_info(info, object_name(tenant_id, device_id, event_id, "clip.mp4")),
        snapshot=SnapshotRef.for_jpeg(snap, object_name(tenant_id, device_id, event_id, "snapshot.jpg"), start),
    )
    spool.put(event, info.path, snap)
    return event


# ---- the cloud as a test reads it back (Firestore emulator, fake-gcs-server, SMTP sink, video_link) ----


def event_docs(stack, tenant_id: str) -> dict[str, dict]:
    """The tenant's event documents by event id."""
    from google.cloud import firestore

    db = firestore.Client(project=stack.project)
    return {d.id: d.to_dict() for d in db.collection("tenants").document(tenant_id).collection("events").stream()}


def sub_docs(stack, tenant_id: str, event_id: str, collection: str) -> dict[str, dict]:
    """An event's ``messages``, ``segments`` or ``deliveries`` documents by id."""
    from google.cloud import firestore

    db = firestore.Client(project=stack.project)
    ref = db.collection("tenants").document(tenant_id).collection("events").document(event_id)
    return {d.id: d.to_dict() for d in ref.collection(collection).stream()}


def bucket(stack):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)


def mails_to(stack, recipient: str):
    """Messages in the SMTP sink whose ``To`` contains ``recipient`` (a whole address or a domain), oldest
    first."""
    from infra.local.smtp_sink import read_messages

    return [m for m in read_messages(stack.maildir) if recipient in m.get("To", "")]


def mail_text(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def link_of(mail) -> str:
    """The private video link in an alert e-mail."""
    import re

    return re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", mail_text(mail)).group(0)


def playlist(link: str) -> tuple[list[str], list[tuple[float, str]]]:
    """The link page's HLS playlist (the URL its ``data-playlist`` names): its lines and ``[(EXTINF
    seconds, signed segment URL)]``."""
    import html
    import re
    from urllib.parse import urljoin

    import requests

    page = requests.get(link, timeout=10)
    assert page.status_code == 200, page.status_code
    assert re.search(r'data-mode="hls"', page.text), "a version 2 event plays over HLS"
    url = urljoin(link, html.unescape(re.search(r'data-playlist="([^"]+)"', page.text).group(1)))
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    lines = resp.text.splitlines()
    assert lines[0] == "#EXTM3U"
    entries = []
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            entries.append((float(line[len("#EXTINF:"):].rstrip(",")), lines[i + 1]))
    return lines, entries


def state_json(link: str) -> dict:
    import requests

    resp = requests.get(link.rstrip("/") + "/state.json", timeout=10)
    assert resp.status_code == 200, resp.status_code
    return resp.json()


def decode_ts(data: bytes) -> list[bytes]:
    """Decodes one MPEG-TS segment; returns a digest per decoded frame (asserts H.264 video)."""
    import hashlib
    import io

    import av

    with av.open(io.BytesIO(data), format="mpegts") as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return [hashlib.sha256(f.to_ndarray(format="yuv420p").tobytes()).digest()
                for f in container.decode(video=0)]


def decode_mp4(data: bytes) -> list[bytes]:
    import hashlib
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return [hashlib.sha256(f.to_ndarray(format="yuv420p").tobytes()).digest()
                for f in container.decode(video=0)]


def as_utc(v) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))
