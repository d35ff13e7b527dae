"""``ingest``: edge event message (topic ``edge-events``) -> ``tenants/{t}/events/{e}`` in Firestore.

Checks, in order: attributes well formed; the device exists under the tenant named in the attributes and
is active; ``key_version`` is the device's current one; the signature holds; the data is a valid
``EdgeEvent`` whose tenant/device/event ids equal the attributes; the event is not stale (``end_time`` more
than ``VIGINT_EVENT_MAX_AGE_SECONDS`` ago, default 7 days) nor from the future (``start_time``/``end_time``
beyond ``VIGINT_EVENT_MAX_FUTURE_SECONDS`` of clock skew, default 300 s); it is not a replay. Messages failing
any check can never succeed: they are logged with a reason, counted in ``stats/ingest_drops`` and
acknowledged (the function returns normally). Transient errors (Firestore, Pub/Sub) raise so Pub/Sub
redelivers, and after ``max_delivery_attempts`` the subscription's dead-letter policy moves the message to
``edge-events-dead``.

The event document is created with ``create()`` in one batch with the tenant's usage counters
(``vigint.usage``); ``expire_at`` (end time + the tenant's retention) lets a Firestore TTL policy remove it
should the scheduled retention miss it. A second message for a stored event is:

* a redelivery (same data, same Pub/Sub message id, or no id known): only makes sure the follow-on
  ``events-ingested`` message went out (flag ``published.ingested``) -> ``"duplicate"``;
* a replay (same signed data published again as a new message): dropped, reason ``replayed``;
* different data under the same event id: dropped, reason ``event_id_conflict``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs
from pydantic import ValidationError

from vigint import clients, config, device_keys, pipeline, usage
from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, EdgeEvent

log = logging.getLogger(__name__)

STAGE = "ingest"
PUBLISHED_FLAG = "published.ingested"


def handle_edge_event(*, data: bytes, attributes: Mapping[str, str], message_id: str | None = None,
                      now: dt.datetime | None = None) -> str:
    """Ingests one edge event message.

    Args:
        data: the message data (UTF-8 JSON, ``EdgeEvent``).
        attributes: the message attributes (``tenant_id``, ``device_id``, ``event_id``,
            ``schema_version``, ``key_version``, ``signature``).
        message_id: Pub/Sub message id (tells a redelivery from a replay).
        now: current time (UTC), for tests; default the clock.

    Returns:
        What happened: ``"created"``, ``"duplicate"`` or ``"dropped:<reason>"`` (reasons: ``bad_attributes``,
        ``unsupported_schema_version``, ``unknown_device``, ``device_not_active``, ``stale_key_version``,
        ``bad_signature``, ``invalid_json``, ``invalid_body``, ``attributes_mismatch``, ``stale_event``,
        ``future_event``, ``replayed``, ``event_id_conflict``).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: a transient Firestore/Pub/Sub failure.
        vigint.pipeline.InProgress: a concurrent delivery of the same message is publishing the follow-on.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    attrs = dict(attributes or {})
    tenant_id, device_id, event_id = attrs.get("tenant_id", ""), attrs.get("device_id", ""), attrs.get("event_id", "")
    ctx = {"tenant": tenant_id[:63], "device": device_id[:63], "event": event_id[:64], "message": message_id or ""}

    def drop(reason: str) -> str:
        pipeline.count_drop(STAGE, reason, **ctx)
        return f"dropped:{reason}"

    if not (re.match(SLUG_PATTERN, tenant_id) and re.match(SLUG_PATTERN, device_id)
            and re.match(EVENT_ID_PATTERN, event_id)):
        return drop("bad_attributes")
    if attrs.get("schema_version") != "1":
        return drop("unsupported_schema_version")
    try:
        key_version = int(attrs.get("key_version", ""))
    except ValueError:
        return drop("bad_attributes")

    tenant = pipeline.tenant_ref(tenant_id)
    device = tenant.collection("devices").document(device_id).get()
    if not device.exists:
        return drop("unknown_device")
    dev = device.to_dict()
    if dev.get("status") != "active":
        return drop("device_not_active")
    if int(dev.get("key_version") or 0) != key_version:
        return drop("stale_key_version")
    secret = device_keys.derive_secret(
        config.settings().device_key_secret.get_secret_value(), tenant_id, device_id, key_version
    )
    if not device_keys.verify(secret, data, attrs.get("signature", "")):
        return drop("bad_signature")

    try:
        event = EdgeEvent.parse(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        if first["type"] == "json_invalid":
            return drop("invalid_json")
        ctx["error"] = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"[:300]
        return drop("invalid_body")
    if (event.tenant_id, event.device_id, event.event_id) != (tenant_id, device_id, event_id):
        return drop("attributes_mismatch")

    s = config.settings()
    age = (now - event.end_time).total_seconds()
    if age > s.event_max_age_seconds:
        ctx["age_s"] = str(int(age))
        return drop("stale_event")
    ahead = (max(event.start_time, event.end_time) - now).total_seconds()
    if ahead > s.event_max_future_seconds:
        ctx["ahead_s"] = str(int(ahead))
        return drop("future_event")

    digest = hashlib.sha256(data).hexdigest()
    ref = pipeline.event_ref(tenant_id, event_id)
    tenant_snap = tenant.get()
    tenant_doc = tenant_snap.to_dict() if tenant_snap.exists else {}
    doc = event.model_dump()
    doc.update({"ingested_at": fs.SERVER_TIMESTAMP, "status": "ingested", "message_id": message_id,
                "message_sha256": digest, "published": {"ingested": False},
                "expire_at": event.end_time + dt.timedelta(days=pipeline.retention_days(tenant_doc))})
    batch = clients.firestore().batch()
    batch.create(ref, doc)
    usage.add(tenant_id, now=now, batch=batch, events=1, clip_bytes=event.clip.bytes if event.clip else 0)
    try:
        batch.commit()
        outcome = "created"
        log.info("ingest: event %s/%s created (camera %s, kind %s, labels %s)", tenant_id, event_id,
                 event.camera_id, event.kind, ",".join(event.labels))
    except gexc.AlreadyExists:
        existing = ref.get().to_dict() or {}
        if existing.get("device_id") != device_id or existing.get("message_sha256", digest) != digest:
            return drop("event_id_conflict")
        first_id = existing.get("message_id")
        if message_id and first_id and message_id != first_id:
            ctx["first_message"] = str(first_id)
            return drop("replayed")
        outcome = "duplicate"
        log.info("ingest: event %s/%s already stored (redelivery)", tenant_id, event_id)
    pipeline.publish_once(ref, PUBLISHED_FLAG, s.ingested_topic, tenant_id, event_id)
    return outcome
