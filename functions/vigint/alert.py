"""``alert``: ``events-analyzed`` -> policy -> one e-mail per recipient with a private expiring video link.

Policy (decided once per event, stored as ``alert`` on the event, in a transaction with the camera's
cooldown record ``tenants/{t}/cooldowns/{camera_id}``): alert when ``analysis.threat_level >=
alert.threshold``, the tenant has recipients or a webhook, and the camera's last alert is at least
``alert.cooldown_seconds`` old (so a burst of events on one camera makes one alert). During the tenant's
``quiet_hours`` (``{"start": "22:00", "end": "06:00", "timezone": "Europe/Paris"}``, local wall-clock time;
``start > end`` spans midnight) no e-mail goes out unless the threat level is 3; the webhook
(``alert.webhook: {"url", "secret"}``, ``vigint.webhook``) still fires. The decision records its
``channels`` (``["email", "webhook"]``, a subset, or none).

``camera_health`` events (a camera offline or tampered with, a device that stopped sending heartbeats) go
the same way with their own e-mail template (``health_email.*``). ``recording`` events (clips the tenant asked
for) never alert: the decision is ``alerted: false`` with the reason ``"requested recording"``.

Exactly once per recipient: before sending, ``tenants/{t}/events/{e}/deliveries/{sha256(recipient)[:32]}`` is
created with ``create()`` (status ``sending``); after the SMTP server accepts the message it becomes
``sent``. A failed send becomes ``failed`` and the function raises so Pub/Sub redelivers; the retry claims
the ``failed`` delivery again, revokes the unsent link and sends with a new one. A ``sent`` delivery is never
sent again. A ``sending`` claim older than ``SENDING_LEASE_S`` (the process died mid-send) is retried: that
crash window is the only way a recipient can get a second copy, and the stable ``Message-ID`` lets mail
clients fold it. Transient SMTP failures are first retried inside the mailer (tenacity, before the server
accepted anything); permanent refusals (5xx) are recorded as ``failed`` with ``permanent: true`` and not
retried. The webhook has its own delivery document (``kind: "webhook"``) with the same claim rules.
Accepted e-mails are counted in ``tenants/{t}/usage/{YYYY-MM}.emails_sent`` in the same batch as ``sent``.
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

from vigint import clients, config, links, pipeline, render, storage, usage, webhook
from vigint.mailer import Mailer, PermanentSmtpError

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
    return pipeline.as_utc(t)


def _minutes(hhmm: Any) -> int | None:
    try:
        h, m = str(hhmm).split(":")
        h, m = int(h), int(m)
    except (ValueError, TypeError):
        return None
    return h * 60 + m if 0 <= h <= 23 and 0 <= m <= 59 else None


def in_quiet_hours(quiet: Mapping[str, Any] | None, now: dt.datetime) -> bool:
    """True if ``now`` falls in ``quiet`` (``{"start": "HH:MM", "end": "HH:MM", "timezone": IANA}``).

    The window is [start, end) in local wall-clock time; ``start > end`` spans midnight; ``start == end``,
    a missing/invalid field or an unknown zone means no quiet hours (logged).
    """
    if not quiet:
        return False
    from zoneinfo import ZoneInfo

    start, end = _minutes(quiet.get("start")), _minutes(quiet.get("end"))
    try:
        zone = ZoneInfo(str(quiet.get("timezone") or "UTC"))
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError
        log.warning("alert: quiet hours ignored: unknown time zone")
        return False
    if start is None or end is None or start == end:
        return False
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    return start <= minute < end if start < end else (minute >= start or minute < end)


def decide(*, tenant: Mapping[str, Any], event: Mapping[str, Any], last_alert_at: dt.datetime | None,
           now: dt.datetime) -> tuple[bool, str, list[str]]:
    """The alert policy for one event.

    Returns:
        ``(alerted, reason, channels)``; ``reason`` is a sentence for the event document, ``channels`` a
        subset of ``["email", "webhook"]`` (empty when not alerted).
    """
    if event.get("kind") == "recording":
        return False, "requested recording", []
    policy = tenant.get("alert") or {}
    threshold = int(policy.get("threshold", 1))
    level = int((event.get("analysis") or {}).get("threat_level", 0))
    if level < threshold:
        return False, f"threat level {level} is below the tenant's threshold {threshold}", []
    has_webhook = bool((policy.get("webhook") or {}).get("url"))
    if not policy.get("recipients") and not has_webhook:
        return False, "the tenant has no alert recipients", []
    cooldown = int(policy.get("cooldown_seconds") or 0)
    if cooldown and last_alert_at is not None and (now - last_alert_at).total_seconds() < cooldown:
        return False, f"camera {event.get('camera_id')} alerted less than {cooldown} s ago (cooldown)", []
    channels = (["email"] if policy.get("recipients") else []) + (["webhook"] if has_webhook else [])
    reason = f"threat level {level} reaches the tenant's threshold {threshold}"
    quiet = tenant.get("quiet_hours")
    if "email" in channels and level < 3 and in_quiet_hours(quiet, now):
        channels.remove("email")
        reason += (f"; no e-mail in quiet hours ({quiet.get('start')}-{quiet.get('end')} "
                   f"{quiet.get('timezone', 'UTC')}) below threat level 3")
        if not channels:
            return False, reason, []
    return True, reason, channels


def _decide_once(tenant_id: str, event_id: str, camera_id: str, tenant: dict, now: dt.datetime) -> dict:
    db = clients.firestore()
    ref = pipeline.event_ref(tenant_id, event_id)
    cool_ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(camera_id or "_none")

    @fs.transactional
    def txn(tx) -> dict:
        event = ref.get(transaction=tx).to_dict() or {}
        if event.get("alert"):
            return event["alert"]
        cool = cool_ref.get(transaction=tx)
        last = _as_utc((cool.to_dict() or {}).get("last_alert_at")) if cool.exists else None
        alerted, reason, channels = decide(tenant=tenant, event=event, last_alert_at=last, now=now)
        decision = {"decided_at": now, "alerted": alerted, "reason": reason, "channels": channels}
        tx.update(ref, {"alert": decision})
        if alerted:
            tx.set(cool_ref, {"last_alert_at": now, "event_id": event_id})
        return decision

    return txn(db.transaction(max_attempts=10))


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

    # Health alerts neither wait for nor start a detection cooldown of the same camera.
    cool_key = str(event.get("camera_id") or "_none")
    if event.get("kind") == "camera_health":
        cool_key = f"health:{cool_key}"
    decision = _decide_once(tenant_id, event_id, cool_key, tenant, now)
    if not decision.get("alerted"):
        log.info("alert: %s/%s not alerted: %s", tenant_id, event_id, decision.get("reason"))
        return "not_alerted"

    channels = decision.get("channels", ["email"])
    sent, failed = 0, []
    if "email" in channels:
        mailer = mailer or Mailer.from_settings(config.settings())
        snapshot = _snapshot_bytes(event)
        for recipient in (tenant.get("alert") or {}).get("recipients", []):
            try:
                if _deliver(tenant_id, event_id, recipient, event, tenant, snapshot, mailer, now):
                    sent += 1
            except Exception as exc:  # noqa: BLE001 - SMTP/socket errors: recorded on the delivery, raised below
                if isinstance(exc, gexc.GoogleAPICallError):
                    raise
                failed.append(f"{delivery_id(recipient)}: {type(exc).__name__}")
    if "webhook" in channels:
        try:
            _deliver_webhook(tenant_id, event_id, event, tenant, now)
        except webhook.WebhookError as exc:
            failed.append(f"webhook: {exc}")
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


def _claim(ref, recipient: str, now: dt.datetime, kind: str = "email") -> dict | None:
    """Claims the delivery for sending. Returns the previous delivery data ({} if new), or None to skip."""
    try:
        ref.create({"recipient": recipient, "kind": kind, "status": "sending", "attempts": 1, "claimed_at": now,
                    "sent_at": None, "link_id": None})
        return {}
    except gexc.AlreadyExists:
        pass

    @fs.transactional
    def txn(tx) -> dict | None:
        d = ref.get(transaction=tx).to_dict() or {}
        status = d.get("status")
        claimed = _as_utc(d.get("claimed_at"))
        if status == "sent" or (status == "failed" and d.get("permanent")):
            return None
        if status == "sending" and claimed is not None and (now - claimed).total_seconds() < SENDING_LEASE_S:
            return None
        tx.update(ref, {"status": "sending", "attempts": int(d.get("attempts") or 0) + 1, "claimed_at": now})
        return d

    return txn(clients.firestore().transaction(max_attempts=10))


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
    # Firestore TTL backstop: the link (and its access log) goes with the tenant's retention.
    keep_until = max(expires_at, now + dt.timedelta(days=pipeline.retention_days(tenant)))
    clients.firestore().collection("links").document(lid).update({"expire_at": keep_until})
    ref.update({"link_id": lid})
    message = build_message(event=event, tenant=tenant, recipient=recipient, token=token, expires_at=expires_at,
                            snapshot=snapshot, message_id=message_id(event_id, recipient), now=now)
    try:
        smtp_attempts = mailer.send(message)
    except PermanentSmtpError as exc:
        log.warning("alert: %s/%s delivery %s refused for good: %s", tenant_id, event_id, did, exc)
        ref.update({"status": "failed", "permanent": True, "last_error": str(exc)[:200],
                    "smtp_attempts": getattr(mailer, "last_attempts", 1)})
        links.revoke(lid)
        return False
    except Exception as exc:
        log.warning("alert: %s/%s delivery %s failed: %s", tenant_id, event_id, did, type(exc).__name__)
        ref.update({"status": "failed", "last_error": f"{type(exc).__name__}: {str(exc)[:200]}",
                    "smtp_attempts": getattr(mailer, "last_attempts", 1)})
        raise
    batch = clients.firestore().batch()
    batch.update(ref, {"status": "sent", "sent_at": fs.SERVER_TIMESTAMP,
                       "smtp_attempts": smtp_attempts if isinstance(smtp_attempts, int) else 1})
    usage.add(tenant_id, now=now, batch=batch, emails_sent=1)
    batch.commit()
    log.info("alert: %s/%s delivery %s sent (link %s…)", tenant_id, event_id, did, lid[:12])
    return True


def webhook_delivery_id(url: str) -> str:
    """The delivery document id of a webhook endpoint: ``sha256("webhook:" + url)[:32]`` (hex)."""
    return hashlib.sha256(f"webhook:{url}".encode()).hexdigest()[:32]


def _deliver_webhook(tenant_id: str, event_id: str, event: Mapping[str, Any], tenant: Mapping[str, Any],
                     now: dt.datetime) -> bool:
    """POSTs the signed webhook unless already delivered/being delivered. Returns True if delivered now.

    Raises:
        webhook.WebhookError: the endpoint kept failing (recorded as ``failed``; permanent ones are not raised).
    """
    hook = (tenant.get("alert") or {}).get("webhook") or {}
    url, secret = str(hook.get("url") or ""), str(hook.get("secret") or "")
    ref = pipeline.event_ref(tenant_id, event_id).collection("deliveries").document(webhook_delivery_id(url))
    previous = _claim(ref, url, now, kind="webhook")
    if previous is None:
        return False
    s = config.settings()
    try:
        result = webhook.post(url, secret, webhook.payload(event=event, tenant_id=tenant_id),
                              timeout_s=s.webhook_timeout_s, attempts=s.webhook_retry_attempts,
                              initial_s=s.webhook_retry_initial_s)
    except webhook.WebhookError as exc:
        ref.update({"status": "failed", "http_status": exc.status, "permanent": exc.permanent,
                    "last_error": str(exc)[:200]})
        if exc.permanent:
            log.warning("alert: %s/%s webhook refused for good: %s", tenant_id, event_id, exc)
            return False
        raise
    ref.update({"status": "sent", "sent_at": fs.SERVER_TIMESTAMP, "http_status": result.status,
                "http_attempts": result.attempts})
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
    health = event.get("kind") == "camera_health"
    template = "health_email" if health else "alert_email"
    ctx["condition"] = ", ".join(event.get("labels") or []) or "unspecified"
    msg = EmailMessage()
    subject = f"[Vigint] {'Camera health' if health else ctx['threat_word']}: {ctx['title']}"
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
    msg.set_content(render.render(f"{template}.txt", **ctx))
    if snapshot is not None:
        ctx["snapshot_cid"] = f"snapshot.{event.get('event_id', 'event')}@vigint"
    msg.add_alternative(render.render(f"{template}.html", **ctx), subtype="html")
    if snapshot is not None:
        html_part = msg.get_payload()[1]
        html_part.add_related(snapshot, maintype="image", subtype="jpeg", cid=f"<{ctx['snapshot_cid']}>",
                              filename="snapshot.jpg", disposition="inline")
    return msg
