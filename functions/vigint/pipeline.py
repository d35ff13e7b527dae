"""Pieces shared by the Pub/Sub-triggered handlers: Firestore references, follow-on publishes, drop counts."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
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


def publish_follow_on(topic_id: str, tenant_id: str, event_id: str, extra: Mapping[str, Any] | None = None) -> str:
    """Publishes ``{"tenant_id", "event_id"}`` (same two attributes) to a follow-on topic and waits.

    ``extra`` adds fields to the data (schema version 2: ``seq`` on ``events-ingested``, ``verdict`` on
    ``events-analyzed``); the attributes stay the two ids.

    Returns:
        The Pub/Sub message id.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the publish failed (transient: let Pub/Sub retry).
    """
    client = clients.publisher()
    topic = client.topic_path(config.settings().project, topic_id)
    data = json.dumps({"tenant_id": tenant_id, "event_id": event_id, **(extra or {})}).encode()
    return client.publish(topic, data, tenant_id=tenant_id, event_id=event_id).result(timeout=PUBLISH_TIMEOUT_S)


class InProgress(RuntimeError):
    """Another delivery of the same message holds the claim right now (transient: let Pub/Sub redeliver)."""


CLAIM_LEASE_S = 120


def claim(ref, name: str, *, done_field: str | None = None, lease_s: float = CLAIM_LEASE_S,
          now: dt.datetime | None = None) -> str:
    """Claims a one-time step on a document, so concurrent deliveries of one message do it once.

    In a transaction: if ``done_field`` is truthy the step is done (``"done"``); if ``claims.{name}`` was set
    less than ``lease_s`` seconds ago another delivery is doing it (``"busy"``); otherwise ``claims.{name}``
    becomes ``now`` and the caller owns the step (``"mine"``). A claimer that dies loses the claim after
    ``lease_s`` seconds, so a later redelivery takes over.

    Args:
        ref: the document (must exist).
        name: the step, e.g. ``"publish_ingested"`` (a Firestore field name).
        done_field: field path that is truthy once the step is done, e.g. ``"published.ingested"``.
        lease_s: how long a claim holds, seconds.
        now: current time (UTC).

    Returns:
        ``"mine"``, ``"busy"`` or ``"done"``.

    Raises:
        InProgress: every one of the transaction's 10 attempts was aborted by concurrent deliveries writing the
            same document (the client library's ``ValueError``); let Pub/Sub redeliver.
        google.api_core.exceptions.GoogleAPICallError: Firestore failed (transient).
    """
    now = now or dt.datetime.now(dt.timezone.utc)

    @fs.transactional
    def txn(tx) -> str:
        snap = ref.get(transaction=tx)
        if done_field and _flag(snap, done_field):
            return "done"
        try:
            at = as_utc(snap.get(f"claims.{name}"))
        except KeyError:
            at = None
        # A claim stamped after our ``now`` (another delivery read the clock later) holds too.
        if at is not None and (now - at).total_seconds() < lease_s:
            return "busy"
        tx.update(ref, {f"claims.{name}": now})
        return "mine"

    try:
        return txn(clients.firestore().transaction(max_attempts=10))
    except ValueError as exc:
        if isinstance(exc.__cause__, gexc.Aborted):  # the library wraps its last Aborted in a ValueError
            raise InProgress(f"{ref.path}: claim {name} lost to concurrent deliveries: {exc}") from exc
        raise


def publish_once(ref, flag: str, topic_id: str, tenant_id: str, event_id: str,
                 extra: Mapping[str, Any] | None = None) -> bool:
    """Publishes the follow-on message unless the event document records it was already published.

    The flag (a boolean field on the event document, e.g. ``published.ingested``) is set after the
    publish succeeds, so a crash in between leads to one more publish on redelivery, never to none.
    Concurrent deliveries are serialised by ``claim``: the one that loses raises ``InProgress`` (and is
    redelivered by Pub/Sub, when the flag is set). ``ref`` may be any document holding the flag (e.g. a
    version 2 message's ``messages/{seq:06d}``); ``extra`` as in ``publish_follow_on``.

    Returns:
        True if a message was published now; False if it had been published before.

    Raises:
        InProgress: another delivery is publishing it at this moment.
        google.api_core.exceptions.GoogleAPICallError: Firestore/Pub/Sub failed (transient).
    """
    state = claim(ref, "publish_" + flag.rsplit(".", 1)[-1], done_field=flag)
    if state == "done":
        return False
    if state == "busy":
        raise InProgress(f"{tenant_id}/{event_id}: {flag} is being published by another delivery")
    publish_follow_on(topic_id, tenant_id, event_id, extra)
    ref.update({flag: True})
    return True


def as_utc(t: Any) -> dt.datetime | None:
    """A Firestore timestamp/datetime as an aware UTC datetime (None for anything else)."""
    if not isinstance(t, dt.datetime):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def retention_days(tenant: Mapping[str, Any] | None) -> int:
    """The tenant's ``retention_days`` (int >= 1), else ``VIGINT_RETENTION_DAYS`` (default 30)."""
    try:
        days = int((tenant or {}).get("retention_days") or 0)
    except (TypeError, ValueError):
        days = 0
    return days if days >= 1 else config.settings().retention_days


def tenant_timezone(tenant: Mapping[str, Any] | None) -> str | None:
    """The tenant's IANA time zone: ``timezone``, else ``quiet_hours.timezone``; None if unset or unknown."""
    from zoneinfo import ZoneInfo

    tenant = tenant or {}
    for name in (tenant.get("timezone"), (tenant.get("quiet_hours") or {}).get("timezone")):
        if isinstance(name, str) and name:
            try:
                ZoneInfo(name)
                return name
            except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd keys
                log.warning("unknown time zone %r in tenant settings; ignored", name[:64])
    return None


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
