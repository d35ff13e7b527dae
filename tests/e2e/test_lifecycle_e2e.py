"""The event lifecycle end to end ("alerts in seconds"): the real edge daemon on real video (vtest.avi, paced
at its 10 fps like a camera) through the real model, delivering to the whole local stack (edge_api,
fake-gcs-server, Pub/Sub push to ingest/analyze/alert, Firestore emulator, SMTP sink, video_link).

* the alert e-mail is in the inbox before the first event of a split chain has ended, and the chain sends one;
* a network cut from the event's confirmation until well into it: nothing is lost, the alert says it is late;
* ``kill -9`` of the daemon mid-event and a restart: one event, closed as interrupted, one e-mail, every
  spooled segment stored.

No upper bound on any duration here: the assertions are about the order of what the system recorded (the
sink's receive stamp, Firestore's receive stamps, the device's own times) and about what ends up stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.e2e.conftest import (as_utc, bucket, event_docs, link_of, mail_text, mails_to, playlist, sub_docs,
                                wait_for)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _device(stack, prefix: str, recipients: int = 1):
    suffix = uuid.uuid4().hex[:8]
    tenant = f"{prefix}-{suffix}"
    emails = [f"r{i}@{tenant}.example" for i in range(recipients)]
    return stack.provision(tenant, f"nuc-{suffix}", recipients=emails), emails


def _config(creds, api_url: str, video, model_dir, spool_dir, **events):
    from vigint_edge.config import (CameraConfig, DeviceConfig, EdgeConfig, EventConfig, ModelConfig, SpoolConfig,
                                    StatusConfig)

    return EdgeConfig(
        device=DeviceConfig(tenant_id=creds["tenant_id"], device_id=creds["device_id"], api_url=api_url,
                            key_version=creds["key_version"]),
        cameras=[CameraConfig(id="hall", source=str(video))],  # realtime: paced at the file's 10 fps
        model=ModelConfig(path=model_dir / "model.xml"),
        events=EventConfig(**{"pre_roll_s": 1, "post_roll_s": 3, "min_hits": 2, "segment_s": 2, **events}),
        spool=SpoolConfig(dir=spool_dir),
        status=StatusConfig(enabled=False),
    )


def _end_seq(stack, tenant, event_id) -> tuple[int, dict]:
    msgs = sub_docs(stack, tenant, event_id, "messages")
    ends = [m for m in msgs.values() if m["phase"] == "end"]
    assert len(ends) == 1, msgs
    return ends[0]["seq"], ends[0]


def _segments_stored(stack, tenant, event_id, count: int) -> dict[str, dict]:
    """Asserts the event has segment documents 0..count-1, each object stored with its sha256."""
    docs = sub_docs(stack, tenant, event_id, "segments")
    assert sorted(docs) == [f"{i:05d}" for i in range(count)], (count, sorted(docs))
    b = bucket(stack)
    for name, doc in docs.items():
        assert hashlib.sha256(b.blob(doc["object"]).download_as_bytes()).hexdigest() == doc["sha256"], name
    return docs


# -------------------------------------------------------------------------------- a. before the end


def test_the_alert_email_arrives_before_the_event_ends_and_a_split_chain_sends_one(
        stack, default_model_dir, vtest_video, tmp_path):
    """14 s of vtest.avi (people in view throughout) with ``max_length_s`` 6: the chain of events the split
    makes sends one alert e-mail per recipient, and it was in the inbox before the first event's ``end``
    reached the cloud."""
    from vigint_edge.daemon import build_daemon

    creds, recipients = _device(stack, "split", recipients=2)
    tenant = creds["tenant_id"]
    config = _config(creds, stack.urls["edge_api"], vtest_video, default_model_dir, tmp_path / "spool",
                     max_length_s=6)
    daemon = build_daemon(config, creds["secret"], exit_when_done=True, max_frames=140)
    assert daemon.run() == 0, "the spool was not emptied"
    ends = daemon.pipelines["hall"].finished
    assert len(ends) >= 2, "14 s of people with max_length_s 6 is split"
    ids = [e.event_id for e in ends]
    assert ends[0].continues is None and [e.continues for e in ends[1:]] == ids[:-1], "one chain, in order"

    def settled():
        docs = event_docs(stack, tenant)
        done = [d for d in docs.values() if d.get("ended") and (d.get("alert") or {}).get("decided_at")]
        return docs if len(done) == len(ids) else None

    docs = wait_for(settled, timeout=60, what="every event of the chain ended and decided")
    assert sorted(docs) == sorted(ids)
    first, rest = docs[ids[0]], [docs[i] for i in ids[1:]]
    assert first["alert"]["alerted"] is True and first["chain_root"] == ids[0]
    assert first["continued_by"] == ids[1]
    for prev_id, d in zip(ids, rest):
        assert d["continues"] == prev_id and d["chain_root"] == ids[0]
        assert d["alert"]["alerted"] is False and d["alert"]["continues_alert_of"] == ids[0], d["alert"]

    for r in recipients:
        mails = mails_to(stack, r)
        assert len(mails) == 1, f"{r}: one alert e-mail for the whole chain, got {len(mails)}"
        assert mails[0]["X-Vigint-Event-Id"] == ids[0]
        assert "still going" in mail_text(mails[0]), "composed while the event was going"
    deliveries = [sub_docs(stack, tenant, i, "deliveries") for i in ids]
    assert len(deliveries[0]) == len(recipients) and not any(deliveries[1:])

    # The order the system recorded: first e-mail in the inbox < the first event's end stored by ingest.
    inbox = min(float(m["X-Vigint-Received-At"]) for m in mails_to(stack, f"@{tenant}.example"))
    _, end_msg = _end_seq(stack, tenant, ids[0])
    end_received = as_utc(end_msg["received_at"]).timestamp()
    assert inbox < end_received, f"e-mail {inbox:.3f} not before the end was ingested ({end_received:.3f})"
    assert as_utc(first["timeline"]["alert_sent"]).timestamp() < end_received
    start_received = as_utc(sub_docs(stack, tenant, ids[0], "messages")["000000"]["received_at"]).timestamp()
    assert start_received < inbox

    # The link opens the chain: one playlist, complete, of every event's segments.
    lines, entries = playlist(link_of(mails_to(stack, recipients[0])[0]))
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert len(entries) == sum(docs[i]["segment_count"] for i in ids)
    assert lines.count("#EXT-X-DISCONTINUITY") == len(ids) - 1


# -------------------------------------------------------------------------------- b. network cut


def test_a_network_cut_from_confirmation_loses_nothing_and_the_alert_says_it_is_late(
        stack, default_model_dir, vtest_video, tmp_path):
    """The device's edge_api and storage traffic goes through real local TCP links; they are cut the moment
    the event's ``start`` is spooled (before it can be delivered) and restored once the start is late
    beyond ``VIGINT_LATE_ALERT_SECONDS``, while the event still goes on. Every message and segment arrives,
    the playlist is complete and the one alert e-mail says it is late.

    The threshold is the stack's own (the session stack runs the functions with the default, 30 s): a
    stack of its own for a lower value would cost this test more than the wait, and calling ``alert`` in
    process would not test the deployed path (the running alert function would mail first). Pub/Sub is
    not cut: every message of the event brings files, so none can be published while the uploads are cut."""
    from tests.edge.test_lanes import CuttableLink
    from vigint import config as cloud_config
    from vigint_edge.daemon import build_daemon

    threshold = float(stack.function_env.get("VIGINT_LATE_ALERT_SECONDS",
                                             cloud_config.Settings.model_fields["late_alert_seconds"].default))
    creds, (recipient,) = _device(stack, "cut")
    tenant = creds["tenant_id"]
    api_host, api_port = stack.urls["edge_api"].split("//", 1)[1].rsplit(":", 1)
    api_link = CuttableLink((api_host, int(api_port)))
    gcs_link = CuttableLink(("127.0.0.1", stack.ports["gcs"]))  # the uploads' HTTP proxy
    frames = int((threshold + 9) * 10)  # the event goes on a few seconds after the restore
    config = _config(creds, f"http://127.0.0.1:{api_link.port}", vtest_video, default_model_dir,
                     tmp_path / "spool", max_length_s=120)
    daemon = build_daemon(config, creds["secret"], exit_when_done=True, max_frames=frames)
    for d in daemon.deliverers:
        d.session.trust_env = False
        d.session.proxies = {"http": f"http://127.0.0.1:{gcs_link.port}"}
    starts = []

    def cut_at_start(item):  # runs inside the spool's put, before the daemon's own listener wakes delivery
        if item.item_id.endswith(".00000") and not starts:
            api_link.cut()
            gcs_link.cut()
            starts.append(daemon.spool.load_event(item))

    daemon.spool.add_listener(cut_at_start)
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("rc", daemon.run()), daemon=True)
    try:
        runner.start()
        wait_for(lambda: starts, timeout=30, what="the event's start")
        start = starts[0]
        restore_at = start.confirmed_at + timedelta(seconds=threshold + 2)
        while datetime.now(timezone.utc) < restore_at:
            time.sleep(0.2)
        assert event_docs(stack, tenant) == {}, "nothing reached the cloud while cut"
        pending = daemon.spool.pending()
        assert len(pending) >= 5 and not daemon.pipelines["hall"].finished, "cut mid-event, with a backlog"
        live = [d for d in daemon.deliverers if d.lane == "live"]
        assert len(live) == 3 and sum(d.stats()["delivery_retries"] for d in live) >= 1, \
            "the live lane tried and failed meanwhile"
        api_link.restore()
        gcs_link.restore()
        runner.join(frames / 10 + 120)
        assert result.get("rc") == 0, "the spool was not emptied after the restore"
    finally:
        daemon.stop.set()
        api_link.close()
        gcs_link.close()
    (end,) = daemon.pipelines["hall"].finished
    assert end.event_id == start.event_id and end.segment_count >= 10

    doc = wait_for(lambda: (lambda d: d if d and d.get("ended") and (d.get("alert") or {}).get("decided_at")
                            else None)(event_docs(stack, tenant).get(end.event_id)),
                   timeout=60, what="the event ended and decided")
    assert doc["segment_count"] == end.segment_count and doc["seq"] == end.seq
    assert sorted(sub_docs(stack, tenant, end.event_id, "messages")) == [f"{s:06d}" for s in range(end.seq + 1)]
    _segments_stored(stack, tenant, end.event_id, end.segment_count)

    late = (as_utc(doc["timeline"]["start_published"]) - as_utc(doc["confirmed_at"])).total_seconds()
    assert late > threshold, late
    assert doc["alert"]["alerted"] is True and doc["alert"]["late_s"] == pytest.approx(late, abs=0.1)
    mails = wait_for(lambda: mails_to(stack, recipient), timeout=30, what="the alert e-mail")
    assert len(mails) == 1 and mails[0]["Subject"].endswith("(late)"), mails[0]["Subject"]
    text = mail_text(mails[0])
    assert "LATE ALERT: delivered" in text and "late: the device could not reach the cloud sooner" in text
    lines, entries = playlist(link_of(mails[0]))
    assert lines[-1] == "#EXT-X-ENDLIST" and len(entries) == end.segment_count


# -------------------------------------------------------------------------------- c. kill -9


def test_kill_9_mid_event_then_restart_makes_one_interrupted_event_and_one_email(
        stack, default_model_dir, vtest_video, tmp_path):
    """``vigint-edge run`` in its own process, killed with SIGKILL once the alert e-mail is in the inbox and
    segments are stored, while the event goes on; the daemon started again on the same spool closes the
    event as interrupted and delivers what was left. The cloud has one event, ended and interrupted, every
    spooled segment stored, and still one e-mail per recipient."""
    from vigint_edge.daemon import build_daemon
    from vigint_edge.delivery.spool import Spool

    creds, recipients = _device(stack, "kill", recipients=2)
    tenant = creds["tenant_id"]
    spool_dir = tmp_path / "spool"
    config = _config(creds, stack.urls["edge_api"], vtest_video, default_model_dir, spool_dir, max_length_s=600)
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))  # YAML is a superset of JSON
    env = {**os.environ, "VIGINT_DEVICE_SECRET": creds["secret"],
           "PYTHONPATH": os.pathsep.join([str(REPO / "edge_daemon"), str(REPO)])}
    log_file = tmp_path / "edge.log"
    with open(log_file, "wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "vigint_edge.cli", "run", "--config", str(config_file)],
                                 env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        seen = {}

        def alerted_with_segments():
            docs = event_docs(stack, tenant)
            seen.update(docs={k: (d.get("kind"), d.get("seq"), d.get("alert")) for k, d in docs.items()},
                        mails=len(mails_to(stack, f"@{tenant}.example")))
            if len(docs) != 1 or len(mails_to(stack, f"@{tenant}.example")) < len(recipients):
                return None
            (event_id,) = docs
            return event_id if len(sub_docs(stack, tenant, event_id, "segments")) >= 2 else None

        try:
            event_id = wait_for(alerted_with_segments, timeout=60, what="the alert e-mails and two stored segments")
        except AssertionError as exc:
            raise AssertionError(f"{exc} ({seen}); the edge's log ends:\n{log_file.read_text()[-3000:]}") from None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert not event_docs(stack, tenant)[event_id].get("ended"), "killed mid-event"
    before = {int(k) for k in sub_docs(stack, tenant, event_id, "segments")}

    left = Spool(spool_dir, config.spool.max_bytes)  # what the next start finds
    assert left.open_events() == [event_id]
    spooled = before | {s.index for it in left.pending() for s in left.load_event(it).segments}
    assert spooled == set(range(len(spooled)))

    # The daemon again on the same spool (the CLI's composition root, in process): one frame, too few
    # detector frames for a new event, then it delivers everything and exits.
    again = build_daemon(config, creds["secret"], exit_when_done=True, max_frames=1)
    assert again.run() == 0, "the spool was not emptied"
    assert again.pipelines["hall"].finished == []

    def ended():
        doc = event_docs(stack, tenant).get(event_id) or {}
        return doc if doc.get("ended") else None

    doc = wait_for(ended, timeout=60, what="the interrupted end in the cloud")
    assert sorted(event_docs(stack, tenant)) == [event_id], "one event document"
    assert doc["interrupted"] is True and doc["phase"] == "end" and doc.get("clip") is None
    assert doc["segment_count"] == len(spooled)
    _segments_stored(stack, tenant, event_id, doc["segment_count"])
    end_seq, _ = _end_seq(stack, tenant, event_id)
    assert sorted(sub_docs(stack, tenant, event_id, "messages")) == [f"{s:06d}" for s in range(end_seq + 1)]
    time.sleep(3)  # room for the end's ingested -> analyzed -> alert hops
    for r in recipients:
        assert len(mails_to(stack, r)) == 1, f"{r}: no second e-mail after the restart"
    assert len(sub_docs(stack, tenant, event_id, "deliveries")) == len(recipients)
    lines, entries = playlist(link_of(mails_to(stack, recipients[0])[0]))
    assert lines[-1] == "#EXT-X-ENDLIST" and len(entries) == len(spooled)
