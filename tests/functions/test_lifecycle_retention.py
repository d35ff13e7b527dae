"""retention of schema version 2 events: the event's ``messages`` and ``segments`` documents and its
``segments/`` and ``snapshots/`` objects go with it (against the emulators and fake-gcs-server)."""

from __future__ import annotations

import datetime as dt
import uuid

from tests.functions.conftest import all_docs, bucket_objects


def test_retention_deletes_a_lifecycle_event_with_its_messages_segments_and_objects(fenv, smtp_sink):
    from tests.functions.v2 import Lifecycle, signed, ts_segments
    from vigint import ingest, pipeline, retention
    from vigint.schema import event_prefix

    creds = fenv.provision(recipients=[f"ret-{uuid.uuid4().hex[:8]}@example.com"])
    tenant_id = creds["tenant_id"]
    segments = ts_segments(2)
    now = dt.datetime.now(dt.timezone.utc)
    old = Lifecycle(creds, fenv.media, segments, start=now - dt.timedelta(days=40))
    new = Lifecycle(creds, fenv.media, segments, start=now - dt.timedelta(minutes=5))
    for lc in (old, new):
        msgs = lc.standard(updates=1)
        lc.upload(msgs)
        for msg in msgs:
            data, attrs = signed(creds, msg)
            # Ingested when it happened (ingest refuses messages older than its maximum age).
            assert ingest.handle_edge_event(data=data, attributes=attrs,
                                            now=lc.start + dt.timedelta(seconds=20)) in ("created", "applied")
    old_ref = pipeline.event_ref(tenant_id, old.event_id)
    before = all_docs(old_ref)
    assert any("/messages/" in p for p in before) and any("/segments/" in p for p in before)
    old_prefix = event_prefix(tenant_id, creds["device_id"], old.event_id)
    assert any("/segments/" in o for o in bucket_objects(old_prefix)) and \
        any("/snapshots/" in o for o in bucket_objects(old_prefix))

    counts = retention.apply_retention(tenant_id, {"retention_days": 30}, now)
    assert counts["events"] == 1
    assert all_docs(old_ref) == [] and bucket_objects(old_prefix) == []
    kept = pipeline.event_ref(tenant_id, new.event_id)
    assert any("/segments/" in p for p in all_docs(kept))
    assert bucket_objects(event_prefix(tenant_id, creds["device_id"], new.event_id))
