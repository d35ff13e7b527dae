"""An edge process killed (``kill -9``) in the middle of an event, on real video through the real model, then
restarted on the same spool: the open event is closed once as ``interrupted`` from what was spooled, and
delivery to the real local stack publishes no message and uploads no segment twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.edge.lifecycle_helpers import pull_messages
from vigint_edge.event_model import segment_name
from vigint_edge.delivery.spool import Spool

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# The edge: a camera pipeline on vtest.avi spooling its event lifecycle; prints each item id once it is spooled.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vigint_edge.capture.source import VideoSource
    from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
    from vigint_edge.detection.detector import load_detector
    from vigint_edge.events.pipeline import CameraPipeline
    from vigint_edge.delivery.spool import Spool
    video, model, root, tenant, device = sys.argv[1:6]
    spool = Spool(Path(root), 2 * 1024**3)
    spool.close_interrupted()  # what the daemon does at start
    spool.add_listener(lambda item: print(item.item_id, flush=True))
    cam = CameraConfig(id="hall", source=video, realtime=False)
    dev = DeviceConfig(tenant_id=tenant, device_id=device, api_url="http://127.0.0.1:9")
    pipe = CameraPipeline(cam, dev, EventConfig(segment_s=1.0, max_length_s=600), MotionConfig(),
                          load_detector(Path(model), "CPU", score_threshold=0.4), spool, Path(root).parent / "rec")
    for frame in VideoSource(cam).frames():
        pipe.process(frame)
    pipe.finish()
    """
)


def _run_until(args, env, items: int) -> list[str]:
    """Starts the edge, kills it with SIGKILL once ``items`` items were spooled; returns the ids it printed."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    seen = []
    try:
        for line in child.stdout:
            seen.append(line.strip())
            if len(seen) >= items:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    return seen


def test_kill_9_mid_event_closes_it_once_as_interrupted(stack, vtest_video, default_model_dir, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1, storage

    creds = stack.provision(f"k-{uuid.uuid4().hex[:8]}", "nuc-crash")
    root = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "edge_daemon"), str(REPO)])}
    args = [str(vtest_video), str(default_model_dir / "model.xml"), str(root), creds["tenant_id"],
            creds["device_id"]]
    printed = _run_until(args, env, items=4)  # start + 3 updates: the event is open (max_length_s 600)
    assert len(printed) == 4 and printed[0].endswith(".00000")
    event_id = printed[0].split(".")[0]

    restarted = Spool(root, 2 * 1024**3)
    assert restarted.open_events() == [event_id]
    spooled = {it.item_id: restarted.load_event(it) for it in restarted.pending()}
    assert set(printed) <= set(spooled), "every item the edge reported is whole in the spool"
    last = max(m.seq for m in spooled.values())
    segments_spooled = sorted(s.index for m in spooled.values() for s in m.segments)
    assert segments_spooled == list(range(len(segments_spooled))) and segments_spooled

    closed = restarted.close_interrupted()
    assert len(closed) == 1 and restarted.open_events() == []
    end = restarted.load_event(closed[0])
    assert (end.event_id, end.phase, end.seq, end.interrupted) == (event_id, "end", last + 1, True)
    assert end.clip is None and end.segments == [] and end.segment_count == len(segments_spooled)
    assert not any(p.name.endswith(".mp4") for p in closed[0].path.iterdir())
    assert Spool(root, 2 * 1024**3).close_interrupted() == [], "a second restart closes nothing again"

    # The edge runs again on the same spool (its start also closes nothing twice) and is killed again early.
    again = _run_until(args, env, items=1)
    assert all(not i.startswith(event_id) for i in again), "nothing more of the interrupted event"

    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(stack.project, f"crash-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(request={"name": sub, "topic": f"projects/{stack.project}/topics/edge-events"})
    final = Spool(root, 2 * 1024**3)
    final.close_interrupted()  # the second run's event, if it had started
    expected = {(m.event_id, m.seq) for m in (final.load_event(it) for it in final.pending())}
    from tests.edge.test_lanes import lane_deliverer

    try:
        for lane in ("live", "bulk"):
            dl = lane_deliverer(stack.urls["edge_api"], creds, final, lane)
            for _ in range(20):
                if not final.pending(lane):
                    break
                dl.deliver_pending()
        assert final.pending() == [] and final.failed() == []
        got = pull_messages(subscriber, sub, lambda ms: {(m.attributes["event_id"], int(m.attributes["seq"]))
                                                          for m in ms} >= expected)
    finally:
        subscriber.delete_subscription(request={"subscription": sub})
    pairs = [(m.attributes["event_id"], int(m.attributes["seq"])) for m in got
             if m.attributes.get("tenant_id") == creds["tenant_id"]]
    assert len(pairs) == len(set(pairs)), "no message published twice"
    mine = [json.loads(m.data) for m in got if m.attributes["event_id"] == event_id]
    assert sorted(b["seq"] for b in mine) == list(range(last + 2))
    ends = [b for b in mine if b["phase"] == "end"]
    assert len(ends) == 1 and ends[0]["interrupted"] is True and ends[0]["clip"] is None
    indices = [s["index"] for b in mine for s in b["segments"]]
    assert indices == sorted(set(indices)) == list(range(ends[0]["segment_count"])), "no segment twice"
    bucket = storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)
    prefix = f"tenants/{creds['tenant_id']}/devices/{creds['device_id']}/events/{event_id}/"
    names = sorted(b.name.removeprefix(prefix) for b in bucket.list_blobs(prefix=prefix))
    assert [n for n in names if n.startswith("segments/")] == [segment_name(i) for i in indices]
