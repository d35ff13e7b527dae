"""At-least-once delivery, exactly-once effects: redelivered messages and an edge killed mid-spool, on the
real stack (edge_api, Pub/Sub push, ingest/analyze/alert, SMTP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from google.cloud import firestore

from tests.e2e.conftest import synthetic_event, wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _event_ids(stack, tenant_id):
    db = firestore.Client(project=stack.project)
    return [d.id for d in db.collection("tenants").document(tenant_id).collection("events").stream()]


def _alerted(stack, tenant_id):
    db = firestore.Client(project=stack.project)
    docs = db.collection("tenants").document(tenant_id).collection("events").stream()
    return [d.id for d in docs if (d.to_dict().get("alert") or {}).get("decided_at")]


def _mails_for(stack, domain):
    from infra.local.smtp_sink import read_messages

    return [m for m in read_messages(stack.maildir) if domain in m.get("To", "")]


def _deliverer(stack, creds, spool):
    from vigint_edge.cloud.api_client import EdgeApiClient
    from vigint_edge.delivery.deliverer import Deliverer
    from vigint_edge.delivery.publisher import EventPublisher

    api = EdgeApiClient(stack.urls["edge_api"], creds["tenant_id"], creds["device_id"], creds["secret"])
    publisher = EventPublisher.from_api(api)
    return Deliverer(spool, api, publisher, key_version=creds["key_version"], secret=creds["secret"]), publisher


def test_same_message_delivered_three_times_makes_one_event_and_one_email(stack, tmp_path):
    from vigint_edge.delivery.spool import Spool

    creds = stack.provision("redeliver", "nuc-2", recipients=["ops@redeliver.example"])
    spool = Spool(tmp_path / "spool", max_bytes=100 * 1024**2)
    event = synthetic_event(spool, "redeliver", "nuc-2", "gate", tmp_path)
    deliverer, publisher = _deliverer(stack, creds, spool)
    assert deliverer.deliver_pending() == 1
    for _ in range(2):  # the same event, same bytes, same signature: what a Pub/Sub redelivery looks like
        publisher.publish(event, key_version=creds["key_version"], secret=creds["secret"])

    wait_for(lambda: _alerted(stack, "redeliver"), timeout=60, what="the alert decision")
    wait_for(lambda: _mails_for(stack, "redeliver.example"), timeout=30, what="the email")
    time.sleep(5)  # room for the two extra copies to run through ingest -> analyze -> alert
    assert _event_ids(stack, "redeliver") == [event.event_id]
    assert len(_mails_for(stack, "redeliver.example")) == 1


CHILD = textwrap.dedent(
    """
    import json, logging, sys
    from pathlib import Path
    from vigint_edge.cloud.api_client import EdgeApiClient
    from vigint_edge.delivery.deliverer import Deliverer
    from vigint_edge.delivery.publisher import EventPublisher
    from vigint_edge.delivery.spool import Spool
    logging.basicConfig(level=logging.INFO)
    creds = json.loads(sys.argv[2])
    spool = Spool(Path(sys.argv[1]), max_bytes=500 * 1024**2)
    api = EdgeApiClient(sys.argv[3], creds["tenant_id"], creds["device_id"], creds["secret"])
    Deliverer(spool, api, EventPublisher.from_api(api), key_version=creds["key_version"],
              secret=creds["secret"]).deliver_pending()
    """
)


def test_edge_killed_mid_spool_then_restarted_delivers_everything_once(stack, tmp_path):
    from vigint_edge.delivery.spool import Spool

    creds = stack.provision("restart", "nuc-3", recipients=["ops@restart.example"])
    root = tmp_path / "spool"
    spool = Spool(root, max_bytes=500 * 1024**2)
    events = [synthetic_event(spool, "restart", "nuc-3", "yard", tmp_path, seconds=4, size=(640, 480), seed=i)
              for i in range(4)]
    ids = [e.event_id for e in events]

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'edge_daemon'}{os.pathsep}{REPO}"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), json.dumps(creds), stack.urls["edge_api"]],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill -9 as soon as the first event has been published (its state.json says so): mid-spool.
    first_state = root / "ready" / ids[0] / "state.json"

    def first_published():
        try:
            return json.loads(first_state.read_text()).get("published")
        except (FileNotFoundError, json.JSONDecodeError):
            return not (root / "ready" / ids[0]).exists()  # already removed: published too

    wait_for(first_published, timeout=60, interval=0.005, what="the first publish")
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p.name for p in (root / "ready").iterdir()]
    assert left, "the kill came after everything was delivered; the test did not exercise a restart"

    restarted = Spool(root, max_bytes=500 * 1024**2)  # a new process's view of the same directory
    deliverer, _ = _deliverer(stack, creds, restarted)
    deliverer.deliver_pending()
    assert restarted.pending() == []

    wait_for(lambda: len(_alerted(stack, "restart")) == len(ids), timeout=90, what="all events alerted")
    wait_for(lambda: len(_mails_for(stack, "restart.example")) >= len(ids), timeout=30, what="all emails")
    time.sleep(3)
    assert sorted(_event_ids(stack, "restart")) == sorted(ids)
    subjects = [m["X-Vigint-Event-Id"] for m in _mails_for(stack, "restart.example")]
    assert sorted(subjects) == sorted(ids), "one email per event, none twice"
