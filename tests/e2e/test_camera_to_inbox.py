"""The whole path on the real local stack: real video through the real model on the edge, real uploads to
fake-gcs-server, real Pub/Sub push to real functions-framework processes, Firestore emulator, SMTP sink, and
the link page served by the real video_link function."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import av
import pytest
import requests
from google.cloud import firestore, storage

from tests.e2e.conftest import decode_mp4, decode_ts, link_of, playlist, state_json, sub_docs, wait_for

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
    snapshot_obj = doc["snapshot"]["object"]
    assert re.fullmatch(re.escape(prefix) + r"snapshots/\d{5}\.jpg", snapshot_obj), snapshot_obj
    assert bucket.blob(snapshot_obj).download_as_bytes()[:3] == b"\xff\xd8\xff"

    # A version 2 event: ended, its segments stored one document each, the clip made of the same frames.
    assert doc["schema_version"] == 2 and doc["ended"] is True and doc["phase"] == "end"
    count = doc["segment_count"]
    segment_docs = sub_docs(stack, "acme", event_id, "segments")
    assert sorted(segment_docs) == [f"{i:05d}" for i in range(count)] and count >= 2, segment_docs.keys()
    assert abs(sum(s["duration_s"] for s in segment_docs.values()) - doc["clip"]["duration_s"]) <= 0.2
    # Every object the messages claimed (each message's own snapshot, the segments, the clip: with the MD5 the
    # edge declared and signed into its upload URL) matched what the bucket stores (ingest's metadata check).
    assert doc["integrity"]["status"] == "ok" and doc["integrity"]["checked"] >= count + 2, doc["integrity"]
    assert doc["clip"]["md5"] == bucket.get_blob(doc["clip"]["object"]).md5_hash
    clip_frames = decode_mp4(clip_bytes)

    # Exactly one email per recipient, each with its own working link: the page plays the event's HLS
    # playlist (complete, every segment decodes, together they are the clip's frames) and offers the clip.
    for r in recipients:
        mails = wait_for(lambda: _mails_to(stack, r), timeout=30, what=f"the email to {r}")
        assert len(mails) == 1
        link = link_of(mails[0])
        lines, entries = playlist(link)
        assert lines[-1] == "#EXT-X-ENDLIST" and "#EXT-X-PLAYLIST-TYPE:EVENT" in lines
        assert len(entries) == count
        frames = []
        for i, (extinf, url) in enumerate(entries):
            assert urlsplit(url).path.endswith(prefix + f"segments/{i:05d}.ts"), url
            assert extinf == pytest.approx(segment_docs[f"{i:05d}"]["duration_s"], abs=0.001)
            seg = requests.get(url, timeout=10)
            assert seg.status_code == 200
            assert hashlib.sha256(seg.content).hexdigest() == segment_docs[f"{i:05d}"]["sha256"]
            decoded = decode_ts(seg.content)
            assert decoded, f"segment {i} decodes to no frame"
            frames += decoded
        assert frames == clip_frames, "the clip is the segments' frames, in order"
        st = state_json(link)
        assert st["mode"] == "hls" and st["ended"] and st["complete"] and st["segments"] == count
        download = requests.get(st["download_url"], timeout=10)
        assert download.status_code == 200 and download.content == clip_bytes
        # fake-gcs-server ignores response-content-disposition; Cloud Storage answers with the signed one.
        disposition = parse_qs(urlsplit(st["download_url"]).query)["response-content-disposition"]
        assert disposition[0].startswith("attachment; filename=") and disposition[0].endswith('.mp4"')
    assert len(_mails_to(stack, "acme.example")) == len(recipients)
