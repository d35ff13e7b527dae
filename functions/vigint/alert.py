"""``alert``: ``events-analyzed`` -> policy -> one e-mail per recipient with a private expiring video link.

Policy (decided once per event, stored as ``alert`` on the event, in a transaction with the camera's
cooldown record ``tenants/{t}/cooldowns/{camera_id}``): alert when ``analysis.threat_level >=
alert.threshold``, the tenant has recipients, and the camera's last alert is at least
``alert.cooldown_seconds`` old.

Exactly once per recipient: before sending, ``tenants/{t}/events/{e}/deliveries/{sha256(recipient)[:32]}`` is
created with ``create()`` (status ``sending``); after the SMTP server accepts the message it becomes
``sent``. A failed send becomes ``failed`` and the function raises so Pub/Sub redelivers; the retry claims
the ``failed`` delivery again, revokes the unsent link and sends with a new one. A ``sent`` delivery is never
sent again. A ``sending`` claim older than ``SENDING_LEASE_S`` (the process died mid-send) is retried: that
crash window is the only way a recipient can get a second copy, and the stable ``Message-ID`` lets mail
clients fold it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, links, pipeline, render, storage
from vigint.mailer import Mailer

log = logging.getLogger(__name__)

STAGE = "alert"
SENDING_LEASE_S = 600


class DeliveryError(RuntimeError):
    """At least one recipient's e-mail could not be sent (Pub/Sub should redeliver)."""


def delivery_id(recipient: str) -> str:
    """``sha256(recipient)[:32]`` (hex): the delivery document id of one recipient."""
    return hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:32]


def message_id(event_id: str, recipient: str) -> str:
    """The e-mail's ``Message-ID``: stable for one event and recipient, so a rare duplicate folds in clients."""
    digest = hashlib.sha256(f"{event_id}:{delivery_id(recipient)}".encode()).hexdigest()[:32]
    return f"<{digest}@alert.vigint>"


def _as_utc(t: Any) -> dt.datetime | None:
    if not isinstance(t, dt.datetime):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def decide(*, tenant: Mapping[str, Any], event: Mapping[str, Any], last_alert_at: dt.datetime | None,
           now: dt.datetime) -> tuple[bool, str]:
    """The alert policy for one event.

    Returns:
        ``(alerted, reason)``; ``reason`` is a sentence for the event document.
    """
    policy = tenant.get("alert") or {}
    threshold = int(policy.get("threshold", 1))
    level = int((event.get("analysis") or {}).get("threat_level", 0))
    if level < threshold:
        return False, f"threat level {level} is below the tenant's threshold {threshold}"
    if not policy.get("recipients"):
        return False, "the tenant has no alert recipients"
    cooldown = int(policy.get("cooldown_seconds") or 0)
    if cooldown and last_alert_at is not None and (now - last_alert_at).total_seconds() < cooldown:
        return False, f"camera {event.get('camera_id')} alerted less than {cooldown} s ago (cooldown)"
    return True, f"threat level {level} reaches the tenant's threshold {threshold}"


def _decide_once(tenant_id: str, event_id: str, camera_id: str, tenant: dict, now: dt.datetime) -> dict:
    db = clients.firestore()
    ref = pipeline.event_ref(tenant_id, event_id)
    cool_ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(camera_id)

    @fs.transactional
    def txn(tx) -> dict:
        event = ref.get(transaction=tx).to_dict() or {}
        if event.get("alert"):
            return event["alert"]
        cool = cool_ref.get(transaction=tx)
        last = _as_utc((cool.to_dict() or {}).get("last_alert_at")) if cool.exists else None
        alerted, reason = decide(tenant=tenant, event=event, last_alert_at=last, now=now)
        decision = {"decided_at": now, "alerted": alerted, "reason": reason}
        tx.update(ref, {"alert": decision})
        if alerted:
            tx.set(cool_ref, {"last_alert_at": now, "event_id": event_id})
        return decision

    return txn(db.transaction())


def handle_analyzed(*, data: bytes, attributes: Mapping[str, str] | None = None, mailer: Mailer | None = None,
                    now: dt.datetime | None = None, message_id: str | None = None) -> str:
    """Decides and sends the alert of one analysed event.

    Args:
        data: ``{"tenant_id", "event_id"}`` as JSON.
        attributes: message attributes (unused beyond logging).
        mailer: SMTP seam (default from ``VIGINT_SMTP_*``).
        now: current time (UTC), for tests.
        message_id: Pub/Sub message id, for logs.

    Returns:
        ``"sent:<n>"`` (deliveries sent now), ``"not_alerted"`` or ``"dropped:<reason>"``.

    Raises:
        DeliveryError: some recipient's e-mail failed (others were sent and will not be sent again).
        google.api_core.exceptions.GoogleAPICallError: transient Firestore/GCS failure.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        msg = json.loads(data)
        tenant_id, event_id = str(msg["tenant_id"]), str(msg["event_id"])
    except (ValueError, KeyError, TypeError):
        pipeline.count_drop(STAGE, "invalid_message", message=message_id or "")
        return "dropped:invalid_message"
    ev_snap = pipeline.event_ref(tenant_id, event_id).get()
    if not ev_snap.exists:
        pipeline.count_drop(STAGE, "unknown_event", tenant=tenant_id, event=event_id)
        return "dropped:unknown_event"
    event = ev_snap.to_dict()
    if not event.get("analysis"):
        pipeline.count_drop(STAGE, "not_analyzed", tenant=tenant_id, event=event_id)
        return "dropped:not_analyzed"
    t_snap = pipeline.tenant_ref(tenant_id).get()
    if not t_snap.exists:
        pipeline.count_drop(STAGE, "unknown_tenant", tenant=tenant_id, event=event_id)
        return "dropped:unknown_tenant"
    tenant = t_snap.to_dict()

    decision = _decide_once(tenant_id, event_id, event.get("camera_id", ""), tenant, now)
    if not decision.get("alerted"):
        log.info("alert: %s/%s not alerted: %s", tenant_id, event_id, decision.get("reason"))
        return "not_alerted"

    mailer = mailer or Mailer.from_settings(config.settings())
    snapshot = _snapshot_bytes(event)
    sent, failed = 0, []
    for recipient in (tenant.get("alert") or {}).get("recipients", []):
        try:
            if _deliver(tenant_id, event_id, recipient, event, tenant, snapshot, mailer, now):
                sent += 1
        except Exception as exc:  # noqa: BLE001 - SMTP/socket errors: recorded on the delivery, raised below
            if isinstance(exc, gexc.GoogleAPICallError):
                raise
            failed.append(f"{delivery_id(recipient)}: {type(exc).__name__}")
    if failed:
        raise DeliveryError(f"alert {tenant_id}/{event_id}: {len(failed)} deliveries failed ({', '.join(failed)})")
    pipeline.event_ref(tenant_id, event_id).update({"status": "alerted"})
    return f"sent:{sent}"


def _snapshot_bytes(event: Mapping[str, Any]) -> bytes | None:
    obj = (event.get("snapshot") or {}).get("object")
    if not obj:
        return None
    try:
        return storage.download(obj, max_bytes=10 * 1024 * 1024)
    except (gexc.NotFound, ValueError):
        log.warning("alert: snapshot %s unavailable; e-mail goes without it", obj)
        return None


def _claim(ref, recipient: str, now: dt.datetime) -> dict | None:
    """Claims the delivery for sending. Returns the previous delivery data ({} if new), or None to skip."""
    try:
        ref.create({"recipient": recipient, "status": "sending", "attempts": 1, "claimed_at": now,
                    "sent_at": None, "link_id": None})
        return {}
    except gexc.AlreadyExists:
        pass

    @fs.transactional
    def txn(tx) -> dict | None:
        d = ref.get(transaction=tx).to_dict() or {}
        status = d.get("status")
        claimed = _as_utc(d.get("claimed_at"))
        if status == "sent":
            return None
        if status == "sending" and claimed is not None and (now - claimed).total_seconds() < SENDING_LEASE_S:
            return None
        tx.update(ref, {"status": "sending", "attempts": int(d.get("attempts") or 0) + 1, "claimed_at": now})
        return d

    return txn(clients.firestore().transaction())


def _deliver(tenant_id: str, event_id: str, recipient: str, event: Mapping[str, Any], tenant: Mapping[str, Any],
             snapshot: bytes | None, mailer: Mailer, now: dt.datetime) -> bool:
    """Sends one recipient's e-mail unless already sent/being sent. Returns True if sent now."""
    did = delivery_id(recipient)
    ref = pipeline.event_ref(tenant_id, event_id).collection("deliveries").document(did)
    previous = _claim(ref, recipient, now)
    if previous is None:
        log.info("alert: %s/%s delivery %s already sent or in progress", tenant_id, event_id, did)
        return False
    if previous.get("link_id"):
        links.revoke(previous["link_id"])  # that e-mail never went out
    ttl = int((tenant.get("alert") or {}).get("link_ttl_seconds") or 7 * 24 * 3600)
    token, lid, expires_at = links.create_link(tenant_id=tenant_id, event_id=event_id, recipient=recipient,
                                               ttl_seconds=ttl, now=now)
    ref.update({"link_id": lid})
    message = build_message(event=event, tenant=tenant, recipient=recipient, token=token, expires_at=expires_at,
                            snapshot=snapshot, message_id=message_id(event_id, recipient), now=now)
    try:
        mailer.send(message)
    except Exception as exc:
        log.warning("alert: %s/%s delivery %s failed: %s", tenant_id, event_id, did, type(exc).__name__)
        ref.update({"status": "failed", "last_error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        raise
    ref.update({"status": "sent", "sent_at": fs.SERVER_TIMESTAMP})
    log.info("alert: %s/%s delivery %s sent (link %s…)", tenant_id, event_id, did, lid[:12])
    return True


def build_message(*, event: Mapping[str, Any], tenant: Mapping[str, Any], recipient: str, token: str,
                  expires_at: dt.datetime, snapshot: bytes | None, message_id: str,
                  now: dt.datetime) -> EmailMessage:
    """The alert e-mail: multipart/alternative (text, and HTML related with the inline snapshot).

    The link is ``{VIGINT_PUBLIC_BASE_URL}/v/{token}``.
    """
    s = config.settings()
    analysis = event.get("analysis") or {}
    level = int(analysis.get("threat_level", 0))
    unavailable = analysis.get("status") == "error"
    ctx = {
        "threat_word": render.THREAT_WORDS.get(level, f"Threat level {level}"),
        "title": analysis.get("title", "Event"),
        "summary": analysis.get("summary", ""),
        "analysis_unavailable": unavailable,
        "camera_id": event.get("camera_id", ""),
        "device_id": event.get("device_id", ""),
        "start_time": event.get("start_time"),
        "labels": ", ".join(event.get("labels") or []) or "nothing recognised",
        "recipient": recipient,
        "link_url": f"{s.public_base_url}/v/{token}",
        "expires_at": expires_at,
        "expires_in": render.duration_words((expires_at - now).total_seconds()),
        "tenant_name": tenant.get("name", ""),
        "event_id": event.get("event_id", ""),
        "snapshot_cid": None,
    }
    msg = EmailMessage()
    subject = f"[Vigint] {ctx['threat_word']}: {ctx['title']}"
    if unavailable:
        subject += " (analysis unavailable)"
    msg["Subject"] = subject
    msg["From"] = s.mail_from
    msg["To"] = recipient
    msg["Date"] = formatdate(now.timestamp(), usegmt=True)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    # Machine-readable ids for mail rules and for tracing an email back to its event (not secrets).
    msg["X-Vigint-Tenant-Id"] = event.get("tenant_id", "")
    msg["X-Vigint-Event-Id"] = event.get("event_id", "")
    msg.set_content(render.render("alert_email.txt", **ctx))
    if snapshot is not None:
        ctx["snapshot_cid"] = f"snapshot.{event.get('event_id', 'event')}@vigint"
    msg.add_alternative(render.render("alert_email.html", **ctx), subtype="html")
    if snapshot is not None:
        html_part = msg.get_payload()[1]
        html_part.add_related(snapshot, maintype="image", subtype="jpeg", cid=f"<{ctx['snapshot_cid']}>",
                              filename="snapshot.jpg", disposition="inline")
    return msg
