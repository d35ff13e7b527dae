"""Pieces shared by the Pub/Sub-triggered handlers: Firestore references, follow-on publishes, drop counts."""

from __future__ import annotations

import json
import logging

from google.cloud import firestore as fs

from vigint import clients, config

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 30.0


def tenant_ref(tenant_id: str):
    """``tenants/{tenant_id}``."""
    return clients.firestore().collection("tenants").document(tenant_id)


def event_ref(tenant_id: str, event_id: str):
    """``tenants/{tenant_id}/events/{event_id}``."""
    return tenant_ref(tenant_id).collection("events").document(event_id)


def publish_follow_on(topic_id: str, tenant_id: str, event_id: str) -> str:
    """Publishes ``{"tenant_id", "event_id"}`` (same two attributes) to a follow-on topic and waits.

    Returns:
        The Pub/Sub message id.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the publish failed (transient: let Pub/Sub retry).
    """
    client = clients.publisher()
    topic = client.topic_path(config.settings().project, topic_id)
    data = json.dumps({"tenant_id": tenant_id, "event_id": event_id}).encode()
    return client.publish(topic, data, tenant_id=tenant_id, event_id=event_id).result(timeout=PUBLISH_TIMEOUT_S)


def publish_once(ref, flag: str, topic_id: str, tenant_id: str, event_id: str) -> bool:
    """Publishes the follow-on message unless the event document records it was already published.

    The flag (a boolean field on the event document, e.g. ``published.ingested``) is set after the
    publish succeeds, so a crash in between leads to one more publish on redelivery, never to none.

    Returns:
        True if a message was published now.
    """
    snap = ref.get()
    if snap.exists and _flag(snap, flag):
        return False
    publish_follow_on(topic_id, tenant_id, event_id)
    ref.update({flag: True})
    return True


def _flag(snap, field: str) -> bool:
    try:
        return bool(snap.get(field))
    except KeyError:
        return False


def count_drop(stage: str, reason: str, **context: str) -> None:
    """Logs a permanently failing message and counts it in ``stats/{stage}_drops`` (``{reason}: n``).

    Args:
        stage: the handler, e.g. ``"ingest"``.
        reason: a snake_case reason, e.g. ``"bad_signature"``.
        context: identifiers worth logging (never secrets).
    """
    log.warning("%s: dropping message: %s %s", stage, reason,
                " ".join(f"{k}={v!r}" for k, v in context.items()))
    try:
        clients.firestore().collection("stats").document(f"{stage}_drops").set(
            {reason: fs.Increment(1), "total": fs.Increment(1), "last_reason": reason,
             "last_at": fs.SERVER_TIMESTAMP},
            merge=True,
        )
    except Exception:  # counting must never turn a permanent drop into a retry loop
        log.exception("%s: could not count drop %s", stage, reason)
