"""The whole path on the real local stack: real video through the real model on the edge, real uploads to
fake-gcs-server, real Pub/Sub push to real functions-framework processes, Firestore emulator, SMTP sink, and
the link page served by the real video_link function."""

from __future__ import annotations

import hashlib
import html
import io
import re
from datetime import datetime, timezone

import av
import pytest
import requests
from google.cloud import firestore, storage

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.slow


def _events(stack, tenant_id):
    db = firestore.Client(project=stack.project)
    return [d.to_dict() for d in db.collection("tenants").document(tenant_id).collection("events").stream()]


def _mails_to(stack, recipient):
    from infra.local.smtp_sink import read_messages

    return [m for m in read_messages(stack.maildir) if recipient in m.get("To", "")]


def _bucket(stack):
    from google.auth.credentials import AnonymousCredentials

    return storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)


def _time(v) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))


def test_camera_to_inbox_on_real_video(stack, default_model_dir, vtest_video, tmp_path):
    from vigint_edge.config import CameraConfig, DeviceConfig, EdgeConfig, EventConfig, ModelConfig, SpoolConfig
    from vigint_edge.daemon import build_daemon

    recipients = ["guard@acme.example", "owner@acme.example"]
    creds = stack.provision("acme", "nuc-1", recipients=recipients)
    config = EdgeConfig(
        device=DeviceConfig(tenant_id="acme", device_id="nuc-1", api_url=stack.urls["edge_api"],
                            key_version=creds["key_version"]),
        cameras=[CameraConfig(id="lobby", source=str(vtest_video))],  # paced at the file's 10 fps
        model=ModelConfig(path=default_model_dir / "model.xml"),
        events=EventConfig(pre_roll_s=1, post_roll_s=2, max_length_s=60, min_hits=2),
        spool=SpoolConfig(dir=tmp_path / "spool"),
    )
    frames = 60  # 6 s of vtest.avi: people walking from the first frame
    before = datetime.now(timezone.utc)
    daemon = build_daemon(config, creds["secret"], exit_when_done=True, max_frames=frames)
    assert daemon.run() == 0, "the spool was not emptied"
    spooled = daemon.pipelines["lobby"].finished
    assert len(spooled) == 1, "6 s of continuous activity is one event"
    event_id = spooled[0].event_id

    docs = wait_for(lambda: [e for e in _events(stack, "acme") if (e.get("alert") or {}).get("decided_at")],
                    timeout=60, what="the event to be ingested, analysed and alerted")
    assert [d["event_id"] for d in docs] == [event_id]
    doc = docs[0]
    assert doc["tenant_id"] == "acme" and doc["device_id"] == "nuc-1" and doc["camera_id"] == "lobby"
    assert doc["labels"][0] == "person"
    assert doc["max_count"]["person"] >= 2, "vtest.avi shows several people at once"
    start, end = _time(doc["start_time"]), _time(doc["end_time"])
    assert before <= start < end <= datetime.now(timezone.utc)
    assert 4.0 <= (end - start).total_seconds() <= frames / 10 + 0.01

    # The clip: in the bucket under the device's prefix, H.264, decodes to the frames the event says.
    prefix = f"tenants/acme/devices/nuc-1/events/{event_id}/"
    bucket = _bucket(stack)
    clip_bytes = bucket.blob(doc["clip"]["object"]).download_as_bytes()
    assert doc["clip"]["object"] == prefix + "clip.mp4"
    assert hashlib.sha256(clip_bytes).hexdigest() == doc["clip"]["sha256"]
    with av.open(io.BytesIO(clip_bytes)) as container:
        vstream = container.streams.video[0]
        assert vstream.codec_context.name == "h264"
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == doc["clip"]["frames"]
    assert decoded >= frames - 10, "pre-roll covers the frames before the event was confirmed"
    assert clip_bytes.index(b"moov") < clip_bytes.index(b"mdat"), "moov first, so browsers start playing at once"
    snapshot = bucket.blob(prefix + "snapshot.jpg").download_as_bytes()
    assert snapshot[:3] == b"\xff\xd8\xff"

    # Exactly one email per recipient, each with its own working link.
    for r in recipients:
        mails = wait_for(lambda: _mails_to(stack, r), timeout=30, what=f"the email to {r}")
        assert len(mails) == 1
        text = mails[0].get_body(("plain",)).get_content()
        link = re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", text).group(0)
        page = requests.get(link, timeout=10)
        assert page.status_code == 200
        src = html.unescape(re.search(r"<video[^>]*\ssrc=\"([^\"]+)\"", page.text).group(1))
        video = requests.get(src, timeout=10)
        assert video.status_code == 200 and video.content == clip_bytes
    assert len(_mails_to(stack, "acme.example")) == len(recipients)
