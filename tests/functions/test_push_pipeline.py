"""One signed event published to ``edge-events`` travels through the stack's function processes (Pub/Sub push,
functions-framework) to an inbox and a playable link: the functions as deployed, not called in-process."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid

import requests


def test_event_to_inbox_through_push_subscriptions(stack, fenv, smtp_sink, media):
    from google.cloud import pubsub_v1

    tenant = f"push-{uuid.uuid4().hex[:8]}"
    recipient = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    creds = stack.provision(tenant, "nuc-1", recipients=[recipient], threshold=1)  # the operator CLI
    # Stamped now: the stack's own ingest process applies the real 7-day maximum age.
    ev = fenv.event(creds, start=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5))
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(stack.project, "edge-events"), data, **attrs).result(timeout=30)

    deadline, mine = time.monotonic() + 60, []
    while time.monotonic() < deadline and not mine:
        mine = [m for m in smtp_sink.messages() if m["To"] == recipient]
        time.sleep(0.5)
    assert len(mine) == 1, "no alert e-mail within 60 s"
    text = mine[0].get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"(http://\S+/v/[A-Za-z0-9_-]+)", text).group(1)
    page = requests.get(link, timeout=10)
    assert page.status_code == 200
    src = re.search(r'<video[^>]*\ssrc="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert requests.get(src, timeout=10).content == media["clip"]
    time.sleep(2)  # a redelivery would have produced a second e-mail by now
    assert len([m for m in smtp_sink.messages() if m["To"] == recipient]) == 1
