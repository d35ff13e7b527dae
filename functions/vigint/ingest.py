"""``ingest``: edge event message (topic ``edge-events``) -> ``tenants/{t}/events/{e}`` in Firestore.

Checks, in order: attributes well formed; the device exists under the tenant named in the attributes and
is active; ``key_version`` is the device's current one; the signature holds; the data is a valid
``EdgeEvent`` whose tenant/device/event ids equal the attributes. Messages failing any check can never
succeed: they are logged with a reason, counted in ``stats/ingest_drops`` and acknowledged (the function
returns normally). Transient errors (Firestore, Pub/Sub) raise so Pub/Sub redelivers.

The event document is created with ``create()``; a redelivery finds it and only makes sure the follow-on
``events-ingested`` message went out (flag ``published.ingested``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs
from pydantic import ValidationError

from vigint import config, device_keys, pipeline
from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, EdgeEvent

log = logging.getLogger(__name__)

STAGE = "ingest"
PUBLISHED_FLAG = "published.ingested"


def handle_edge_event(*, data: bytes, attributes: Mapping[str, str], message_id: str | None = None) -> str:
    """Ingests one edge event message.

    Args:
        data: the message data (UTF-8 JSON, ``EdgeEvent``).
        attributes: the message attributes (``tenant_id``, ``device_id``, ``event_id``,
            ``schema_version``, ``key_version``, ``signature``).
        message_id: Pub/Sub message id, for logs.

    Returns:
        What happened: ``"created"``, ``"duplicate"`` or ``"dropped:<reason>"``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: a transient Firestore/Pub/Sub failure.
    """
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

    ref = pipeline.event_ref(tenant_id, event_id)
    doc = event.model_dump()
    doc.update({"ingested_at": fs.SERVER_TIMESTAMP, "status": "ingested", "message_id": message_id,
                "published": {"ingested": False}})
    try:
        ref.create(doc)
        outcome = "created"
        log.info("ingest: event %s/%s created (camera %s, labels %s)", tenant_id, event_id, event.camera_id,
                 ",".join(event.labels))
    except gexc.AlreadyExists:
        existing = ref.get().to_dict() or {}
        if existing.get("device_id") != device_id:
            return drop("event_id_conflict")
        outcome = "duplicate"
        log.info("ingest: event %s/%s already stored (redelivery)", tenant_id, event_id)
    pipeline.publish_once(ref, PUBLISHED_FLAG, config.settings().ingested_topic, tenant_id, event_id)
    return outcome
