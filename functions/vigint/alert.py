"""``alert``: ``events-analyzed`` -> policy -> one e-mail per recipient with a private expiring video link.

Policy (decided once per event, stored as ``alert`` on the event, in one optimistic read-modify-write, with the
camera's cooldown record ``tenants/{t}/cooldowns/{camera_id}`` when the tenant has a cooldown): alert when ``analysis.threat_level >=
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
created with ``create()`` (status ``sending``); after the SMTP server accepts the message it becomes ``sent``. A
failed send becomes ``failed`` and the function raises so Pub/Sub redelivers; the retry claims the ``failed``
delivery again, revokes the unsent link and sends with a new one. A ``sent`` delivery is never sent again. A
``sending`` claim is a lease of ``SENDING_LEASE_S`` (20 s: one SMTP attempt, bounded by
``vigint.mailer.SMTP_TIMEOUT_S``, or one back-off wait, plus a margin), renewed before every attempt and every wait;
while it holds, another delivery of the same message raises ``vigint.pipeline.InProgress`` (Pub/Sub redelivers it,
and it is never acknowledged unsent); once it lapses (the sender died mid-send) the next delivery claims it and
sends. Pub/Sub retries such a message about once a second on the local stack and after 10 s, 20 s, 40 s... in Google
Cloud, so an e-mail whose sender died goes out within about a minute. That crash window is at-least-once: a sender
that died after the SMTP server accepted the message and before ``sent`` was recorded is sent again (SMTP has no
idempotency key); both copies carry the same ``Message-ID`` (``message_id``), so mail clients can fold them, and the
first copy's link stays valid. Transient SMTP failures are first retried inside the mailer (tenacity, before the
server accepted anything); permanent refusals (5xx) are recorded as ``failed`` with ``permanent: true`` and not
retried. The webhook has its own delivery document (``kind: "webhook"``) with the same claim rules (lease
``webhook_lease_s``). Accepted e-mails are counted in ``tenants/{t}/usage/{YYYY-MM}.emails_sent`` in the same batch
as ``sent``. The event's ``status`` becomes ``alerted`` only once every delivery of the alert is ``sent`` or failed
for good; until then the message keeps coming back.

Duplicate deliveries of one message neither stall nor abort each other: the decision reads and writes the
camera's cooldown document only when the tenant has a cooldown (``cooldown_seconds`` > 0) and the verdict
alerts, so concurrent decisions of other events do not contend on a document that records nothing (Firestore
sustains about one write per second per document:
https://cloud.google.com/firestore/docs/best-practices#high_read_write_and_delete_rates); a decision that
loses to concurrent writers every time raises ``vigint.pipeline.InProgress`` (redelivered).

Schema version 2 events (docs/contracts.md "Event lifecycle"; ``handle_lifecycle``) are decided on every
``events-analyzed`` on the latest verdict (``analysis``) until they alert: the first verdict that reaches the
threshold (usually the instant detections verdict on the ``start``) sends the alert e-mail, once per
recipient per event (``alert.level`` is the level alerted; ``timeline.alert_sent`` when the SMTP server
accepted the first one). A later Gemini verdict above that level sends one **escalation** e-mail per
recipient (``deliveries/{sha256(recipient)[:32]}-escalated``; ``alert.escalated``), whatever the cooldown. A
continuation (``continues``) of an alerted event sends no alert (``alert.continues_alert_of``: the alerted
event of the chain) but may escalate the chain once: the escalation is recorded and delivered on the alerted
event, and its link opens the chain's root event, whose page follows the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, links, mailer as smtp, pipeline, render, storage, usage, webhook
from vigint.mailer import Mailer, PermanentSmtpError

log = logging.getLogger(__name__)

STAGE = "alert"
SENDING_MARGIN_S = 5.0
# A claim renewed before every SMTP attempt and every back-off wait outlives the longest of either.
SENDING_LEASE_S = max(smtp.SMTP_TIMEOUT_S, smtp.RETRY_MAX_WAIT_S) + SENDING_MARGIN_S


def webhook_lease_s(timeout_s: float) -> float:
    """The webhook delivery claim's lease for ``requests`` timeout ``timeout_s`` (seconds): one POST (connect
    and the answer, each up to ``timeout_s``) or one back-off wait, plus a margin."""
    return max(2 * timeout_s, webhook.RETRY_MAX_WAIT_S) + SENDING_MARGIN_S


class ClaimLost(pipeline.InProgress):
    """Another delivery took the claim over (this one's lease lapsed): stop sending, let Pub/Sub redeliver."""


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


def cooldown_seconds(tenant: Mapping[str, Any]) -> int:
    """The tenant's ``alert.cooldown_seconds`` (0: no cooldown)."""
    try:
        return max(0, int((tenant.get("alert") or {}).get("cooldown_seconds") or 0))
    except (TypeError, ValueError):
        return 0


def _decide_with_cooldown(tx, cool_ref, tenant: Mapping[str, Any], event: Mapping[str, Any],
                          now: dt.datetime) -> tuple[bool, str, list[str], bool]:
    """``decide`` inside a decision's read-modify-write, reading the camera's cooldown document only when it can
    change the outcome: the tenant has a cooldown and the verdict alerts without it. Returns ``decide``'s
    triple and whether the cooldown applies (then an alert must record itself in ``cool_ref``)."""
    alerted, reason, channels = decide(tenant=tenant, event=event, last_alert_at=None, now=now)
    if not alerted or not cooldown_seconds(tenant) or event.get("kind") == "recording":
        return alerted, reason, channels, False
    cool = tx.get(cool_ref)
    last = _as_utc((cool.to_dict() or {}).get("last_alert_at")) if cool.exists else None
    if last is not None:
        alerted, reason, channels = decide(tenant=tenant, event=event, last_alert_at=last, now=now)
    return alerted, reason, channels, True


def _decide_once(tenant_id: str, event_id: str, camera_id: str, tenant: dict, now: dt.datetime) -> dict:
    db = clients.firestore()
    ref = pipeline.event_ref(tenant_id, event_id)
    cool_ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(camera_id or "_none")

    def txn(tx) -> dict:
        event = tx.get(ref).to_dict() or {}
        if event.get("alert"):
            return event["alert"]
        alerted, reason, channels, cooled = _decide_with_cooldown(tx, cool_ref, tenant, event, now)
        decision = {"decided_at": now, "alerted": alerted, "reason": reason, "channels": channels}
        tx.update(ref, {"alert": decision})
        if alerted and cooled:
            tx.set(cool_ref, {"last_alert_at": now, "event_id": event_id}, merge=True)
        return decision

    return pipeline.run_optimistic(txn, what=f"{tenant_id}/{event_id}: alert decision")


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
        vigint.pipeline.InProgress: another delivery of this message holds a recipient's claim right now, or
            the decision lost to concurrent writers (redelivered; the event is not ``alerted`` yet).
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
    if event.get("schema_version") == 2:
        return handle_lifecycle(tenant_id, event_id, tenant, mailer=mailer, now=now, event=event)

    # Health alerts neither wait for nor start a detection cooldown of the same camera.
    cool_key = str(event.get("camera_id") or "_none")
    if event.get("kind") == "camera_health":
        cool_key = f"health:{cool_key}"
    decision = _decide_once(tenant_id, event_id, cool_key, tenant, now)
    if not decision.get("alerted"):
        log.info("alert: %s/%s not alerted: %s", tenant_id, event_id, decision.get("reason"))
        return "not_alerted"

    channels = decision.get("channels", ["email"])
    sent, failed, busy = 0, [], []
    if "email" in channels:
        mailer = mailer or Mailer.from_settings(config.settings())
        snapshot = _snapshot_bytes(event)
        for recipient in (tenant.get("alert") or {}).get("recipients", []):
            try:
                if _deliver(tenant_id, event_id, recipient, event, tenant, snapshot, mailer, now):
                    sent += 1
            except pipeline.InProgress as exc:
                busy.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - SMTP/socket errors: recorded on the delivery, raised below
                if isinstance(exc, gexc.GoogleAPICallError):
                    raise
                failed.append(f"{delivery_id(recipient)}: {type(exc).__name__}")
    if "webhook" in channels:
        try:
            _deliver_webhook(tenant_id, event_id, event, tenant, now)
        except pipeline.InProgress as exc:
            busy.append(str(exc))
        except webhook.WebhookError as exc:
            failed.append(f"webhook: {exc}")
    _raise_unfinished(tenant_id, event_id, failed, busy)
    pipeline.event_ref(tenant_id, event_id).update({"status": "alerted"})
    return f"sent:{sent}"


def _raise_unfinished(tenant_id: str, event_id: str, failed: list[str], busy: list[str]) -> None:
    """Raises so Pub/Sub redelivers while some delivery of the alert is neither sent nor failed for good.

    Raises:
        DeliveryError: some deliveries failed (transiently) now.
        vigint.pipeline.InProgress: none failed, but some are being sent by another delivery right now.
    """
    if failed:
        raise DeliveryError(f"alert {tenant_id}/{event_id}: {len(failed)} deliveries failed ({', '.join(failed)})"
                            + (f"; {len(busy)} in progress elsewhere" if busy else ""))
    if busy:
        raise pipeline.InProgress(f"alert {tenant_id}/{event_id}: {len(busy)} deliveries in progress elsewhere "
                                  f"({'; '.join(busy)})")


# ------------------------------------------------------------------------------------------ schema version 2


def late_seconds(event: Mapping[str, Any]) -> float | None:
    """How late the event's ``start`` reached the cloud: its ``sent_at`` (``timeline.start_published``, else
    the latest message's) minus ``confirmed_at``, in seconds, when that is above
    ``VIGINT_LATE_ALERT_SECONDS``; None when it is not late (or the times are unknown)."""
    sent = _as_utc((event.get("timeline") or {}).get("start_published")) or _as_utc(event.get("sent_at"))
    confirmed = _as_utc(event.get("confirmed_at"))
    if sent is None or confirmed is None:
        return None
    late = (sent - confirmed).total_seconds()
    return round(late, 1) if late > config.settings().late_alert_seconds else None


def _decide_lifecycle(tenant_id: str, event: Mapping[str, Any], cool_key: str, tenant: Mapping[str, Any],
                      now: dt.datetime) -> dict:
    """The alert decision of a version 2 event (one optimistic read-modify-write with the continued event and,
    when the tenant has a cooldown and the verdict alerts, the camera's cooldown): kept once it alerted (or
    continues an alert); otherwise decided again on the latest verdict."""
    event_id = str(event.get("event_id"))
    ref = pipeline.event_ref(tenant_id, event_id)
    cool_ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(cool_key or "_none")
    prev_id = event.get("continues")
    prev_ref = pipeline.event_ref(tenant_id, prev_id) if prev_id else None

    def txn(tx) -> dict:
        ev = tx.get(ref).to_dict() or {}
        stored = ev.get("alert") or {}
        if stored.get("alerted") or stored.get("continues_alert_of"):
            return stored
        prev_alert = {}
        if prev_ref is not None:
            prev = tx.get(prev_ref)
            prev_alert = ((prev.to_dict() or {}).get("alert") or {}) if prev.exists else {}
        if prev_alert.get("alerted") or prev_alert.get("continues_alert_of"):
            of = prev_alert.get("continues_alert_of") or prev_id
            decision = {"decided_at": now, "alerted": False, "channels": [], "continues_alert_of": of,
                        "reason": f"continues event {prev_id}, whose chain alerted already (event {of})",
                        "level": prev_alert.get("level"), "escalated": False}
            tx.update(ref, {"alert": decision})
            return decision
        alerted, reason, channels, cooled = _decide_with_cooldown(tx, cool_ref, tenant, ev, now)
        if not alerted and stored and stored.get("reason") == reason:
            return stored  # unchanged: no write (about one write per second per document)
        analysis = ev.get("analysis") or {}
        decision = {"decided_at": now, "alerted": alerted, "reason": reason, "channels": channels,
                    "level": int(analysis.get("threat_level", 0)) if alerted else None,
                    "title": analysis.get("title") if alerted else None,
                    "verdict": analysis.get("verdict") if alerted else None,
                    "escalated": False, "late_s": late_seconds(ev) if alerted else None}
        tx.update(ref, {"alert": decision})
        if alerted and cooled:
            tx.set(cool_ref, {"last_alert_at": now, "event_id": event_id}, merge=True)
        return decision

    return pipeline.run_optimistic(txn, what=f"{ref.path}: alert")


def _escalate_once(tenant_id: str, event: Mapping[str, Any], tenant: Mapping[str, Any],
                   now: dt.datetime) -> dict | None:
    """Records the escalation of the event's alert chain if its latest verdict is a Gemini one above the
    level alerted (at most once: ``alert.escalated`` on the alerted event). Returns the escalation record
    (also when recorded before, so a redelivery finishes its deliveries), or None."""
    event_id = str(event.get("event_id"))
    ref = pipeline.event_ref(tenant_id, event_id)

    def txn(tx) -> dict | None:
        ev = tx.get(ref).to_dict() or {}
        mine = ev.get("alert") or {}
        target_id = event_id if mine.get("alerted") else mine.get("continues_alert_of")
        if not target_id:
            return None
        target_ref = pipeline.event_ref(tenant_id, target_id)
        target = ev if target_id == event_id else (tx.get(target_ref).to_dict() or {})
        talert = target.get("alert") or {}
        if talert.get("escalated"):
            record = talert.get("escalation") or {}
            return record if record.get("by_event") == event_id else None
        analysis = ev.get("analysis") or {}
        level = int(analysis.get("threat_level", 0))
        if analysis.get("source") != "gemini" or analysis.get("status") != "ok":
            return None
        if talert.get("level") is None or level <= int(talert["level"]):
            return None
        quiet = tenant.get("quiet_hours")
        record = {"at": now, "by_event": event_id, "alerted_event": target_id,
                  "link_event": str(target.get("chain_root") or target_id),
                  "from_level": int(talert["level"]), "from_title": talert.get("title"),
                  "to_level": level, "to_title": analysis.get("title"), "verdict": analysis.get("verdict"),
                  "email": bool((tenant.get("alert") or {}).get("recipients"))
                  and (level >= 3 or not in_quiet_hours(quiet, now))}
        tx.update(target_ref, {"alert.escalated": True, "alert.escalated_level": level, "alert.escalation": record})
        if target_id != event_id:
            tx.update(ref, {"alert.escalated": True, "alert.escalated_level": level})
        return record

    return pipeline.run_optimistic(txn, what=f"{ref.path}: alert")


def _mark_alert_sent(ref, accepted_at: dt.datetime | None, complete: bool) -> None:
    """``timeline.alert_sent`` (if unset) = when the SMTP server accepted the first alert e-mail
    (``accepted_at``, None if none was accepted now); ``status: "alerted"`` once ``complete`` (every delivery of
    the alert sent or failed for good). Writes nothing when there is nothing new to record."""

    def txn(tx) -> None:
        ev = tx.get(ref).to_dict() or {}
        updates: dict = {}
        if complete and ev.get("status") != "alerted":
            updates["status"] = "alerted"
        if accepted_at is not None and not (ev.get("timeline") or {}).get("alert_sent"):
            updates["timeline.alert_sent"] = accepted_at
        if updates:
            tx.update(ref, updates)

    pipeline.run_optimistic(txn, what=f"{ref.path}: alert sent")


def handle_lifecycle(tenant_id: str, event_id: str, tenant: Mapping[str, Any], *, mailer: Mailer | None = None,
                     now: dt.datetime | None = None, event: Mapping[str, Any] | None = None) -> str:
    """Decides and sends the alert (and at most one escalation) of a version 2 event (module docstring).

    ``event``: the event document as just read by the caller (read here if None). The path to the first
    e-mail is kept to a few sequential Firestore round trips (each 10-30 ms in production): the decision's
    read-modify-write, the delivery claim, one batch with the link; the snapshot is fetched meanwhile.

    Returns:
        ``"sent:<n>"`` (alert and escalation e-mails sent now), or ``"not_alerted"``.

    Raises:
        DeliveryError: some recipient's e-mail or the webhook failed (the rest are not sent again).
        vigint.pipeline.InProgress: another delivery holds a recipient's claim right now (redelivered).
        google.api_core.exceptions.GoogleAPICallError: transient Firestore/GCS failure.
    """
    started = time.monotonic()
    now = now or dt.datetime.now(dt.timezone.utc)
    ref = pipeline.event_ref(tenant_id, event_id)
    if event is None:
        event = ref.get().to_dict() or {}
    # Only a Gemini verdict can escalate (_escalate_once): a detections verdict skips that read-modify-write.
    gemini = (event.get("analysis") or {}).get("source") == "gemini"
    # The first alert's snapshot is fetched while the decision is made; later messages of an alerted event
    # (Gemini's verdicts, label changes) mostly find every e-mail sent, and fetch it only if they need it.
    snapshot_fetch = _fetch_in_background(_snapshot_bytes, event) if (
        (tenant.get("alert") or {}).get("recipients") and not (event.get("alert") or {}).get("alerted")) else None
    decision = _decide_lifecycle(tenant_id, event, str(event.get("camera_id") or "_none"), tenant, now)
    escalation = _escalate_once(tenant_id, event, tenant, now) if gemini and (
        decision.get("alerted") or decision.get("continues_alert_of")) else None
    if not decision.get("alerted") and escalation is None:
        log.info("alert: %s/%s not alerted: %s", tenant_id, event_id, decision.get("reason"))
        return "not_alerted"
    event = {**event, "alert": decision}  # with the decision, for the e-mail
    if escalation is not None:
        event["alert"] = {**decision, "escalated": True, "escalation": escalation}
    recipients = (tenant.get("alert") or {}).get("recipients", [])
    sent, failed, accepted, busy = 0, [], [], []
    snapshot = None
    if (decision.get("alerted") and "email" in decision.get("channels", [])) or (escalation or {}).get("email"):
        mailer = mailer or Mailer.from_settings(config.settings())
        snapshot = snapshot_fetch.result() if snapshot_fetch is not None else _snapshot_bytes(event)

    def each(send) -> None:
        nonlocal sent
        for recipient in recipients:
            try:
                at = send(recipient)
                if at:
                    sent += 1
                    accepted.append(at)
            except pipeline.InProgress as exc:
                busy.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - SMTP/socket errors: recorded on the delivery, raised below
                if isinstance(exc, gexc.GoogleAPICallError):
                    raise
                failed.append(f"{delivery_id(recipient)}: {type(exc).__name__}")

    if decision.get("alerted"):
        if "email" in decision.get("channels", []):
            each(lambda r: _deliver(tenant_id, event_id, r, event, tenant, snapshot, mailer, now, started=started))
        if "webhook" in decision.get("channels", []):
            try:
                _deliver_webhook(tenant_id, event_id, event, tenant, now)
            except pipeline.InProgress as exc:
                busy.append(str(exc))
            except webhook.WebhookError as exc:
                failed.append(f"webhook: {exc}")
        # The first acceptance is recorded at once; "alerted" only once nothing of the alert is left to send.
        if accepted or (not failed and not busy and (event.get("status") != "alerted")):
            _mark_alert_sent(ref, min(accepted) if accepted else None, complete=not failed and not busy)
    if escalation is not None and escalation.get("email"):
        each(lambda r: _deliver(tenant_id, event_id, r, event, tenant, snapshot, mailer, now,
                                escalation=escalation, started=started))
    _raise_unfinished(tenant_id, event_id, failed, busy)
    return f"sent:{sent}"


_fetch_pool = None


def _fetch_in_background(fn, *args):
    """``fn(*args)`` on a small shared thread pool; returns its ``concurrent.futures.Future``."""
    global _fetch_pool
    if _fetch_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _fetch_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alert-fetch")
    return _fetch_pool.submit(fn, *args)


def _snapshot_bytes(event: Mapping[str, Any]) -> bytes | None:
    obj = (event.get("snapshot") or {}).get("object")
    if not obj:
        return None
    try:
        return storage.download(obj, max_bytes=10 * 1024 * 1024)
    except (gexc.NotFound, ValueError):
        log.warning("alert: snapshot %s unavailable; e-mail goes without it", obj)
        return None


class _Claim:
    """A delivery claim this process holds: ``previous`` is the delivery's data before it ({} if new)."""

    # Renewed at most this often: the claim written moments ago still has its lease less this (the first SMTP
    # attempt, right after the claim, costs no extra round trip). The lease covers this plus one attempt or
    # wait because SENDING_MARGIN_S is larger.
    RENEW_AFTER_S = SENDING_MARGIN_S / 3

    def __init__(self, ref, claim_id: str, now: dt.datetime, previous: dict):
        self.ref, self.claim_id, self.previous = ref, claim_id, previous
        self._now, self._t0 = now, time.monotonic()
        self._renewed = self._t0

    def renew(self) -> None:
        """Moves ``claimed_at`` to now (the claim's clock: the handler's ``now`` plus the time since the claim),
        unless it was written less than ``RENEW_AFTER_S`` ago.

        Raises:
            ClaimLost: another delivery took the claim over, or the delivery is no longer ``sending``.
        """
        t = time.monotonic()
        if t - self._renewed < self.RENEW_AFTER_S:
            return
        at = self._now + dt.timedelta(seconds=t - self._t0)

        def txn(tx) -> None:
            d = tx.get(self.ref).to_dict() or {}
            if d.get("status") != "sending" or d.get("claim_id") != self.claim_id:
                raise ClaimLost(f"{self.ref.path}: claimed by another delivery")
            tx.update(self.ref, {"claimed_at": at})

        pipeline.run_optimistic(txn, what=f"{self.ref.path}: renew claim")
        self._renewed = t


def _claim(ref, recipient: str, now: dt.datetime, kind: str = "email",
           lease_s: float = SENDING_LEASE_S) -> _Claim | None:
    """Claims the delivery for sending.

    Returns:
        The claim, or None when the delivery is done (``sent``, or ``failed`` for good).

    Raises:
        vigint.pipeline.InProgress: another delivery claimed it less than ``lease_s`` seconds ago (it may be
            sending right now; redelivered, and taken over once its lease lapses).
    """
    claim_id = uuid.uuid4().hex
    try:
        ref.create({"recipient": recipient, "kind": kind, "status": "sending", "attempts": 1, "claimed_at": now,
                    "claim_id": claim_id, "sent_at": None, "link_id": None})
        return _Claim(ref, claim_id, now, {})
    except gexc.AlreadyExists:
        pass

    def txn(tx) -> dict | None:
        d = tx.get(ref).to_dict() or {}
        status = d.get("status")
        claimed = _as_utc(d.get("claimed_at"))
        if status == "sent" or (status == "failed" and d.get("permanent")):
            return None
        if status == "sending" and claimed is not None and (now - claimed).total_seconds() < lease_s:
            raise pipeline.InProgress(f"{ref.path}: being sent by another delivery (claimed "
                                      f"{(now - claimed).total_seconds():.1f} s ago, lease {lease_s:.0f} s)")
        tx.update(ref, {"status": "sending", "attempts": int(d.get("attempts") or 0) + 1, "claimed_at": now,
                        "claim_id": claim_id})
        return d

    previous = pipeline.run_optimistic(txn, what=f"{ref.path}: alert")
    return None if previous is None else _Claim(ref, claim_id, now, previous)


def _deliver(tenant_id: str, event_id: str, recipient: str, event: Mapping[str, Any], tenant: Mapping[str, Any],
             snapshot: bytes | None, mailer: Mailer, now: dt.datetime,
             escalation: Mapping[str, Any] | None = None, started: float | None = None) -> dt.datetime | None:
    """Sends one recipient's e-mail unless already sent/being sent.

    ``escalation`` (a version 2 escalation record, see ``_escalate_once``): the escalation e-mail instead,
    delivery ``{delivery_id}-escalated`` on the alerted event of the chain, link to the chain's root event.
    ``started``: ``time.monotonic()`` at ``now``, so the e-mail's composition time is ``now`` + the time since.

    Returns:
        When the SMTP server accepted the message (UTC) if it was sent now, else None (sent before, or
        refused for good).

    Raises:
        vigint.pipeline.InProgress: another delivery holds the claim (``ClaimLost``: took it over meanwhile).
        smtplib.SMTPException, OSError: the send failed (recorded as ``failed``; retried at redelivery).
    """
    did = delivery_id(recipient) + ("-escalated" if escalation else "")
    owner = str(escalation["alerted_event"]) if escalation else event_id
    link_event = str(escalation["link_event"]) if escalation else event_id
    ref = pipeline.event_ref(tenant_id, owner).collection("deliveries").document(did)
    claim = _claim(ref, recipient, now)
    if claim is None:
        log.info("alert: %s/%s delivery %s already sent", tenant_id, owner, did)
        return None
    previous = claim.previous
    if previous.get("link_id") and previous.get("status") == "failed":
        links.revoke(previous["link_id"])  # that e-mail never went out
    # A lapsed "sending" claim keeps its link: its sender may have died after the server accepted the e-mail,
    # and a recipient whose client folds the two copies (same Message-ID) may keep the first.
    ttl = int((tenant.get("alert") or {}).get("link_ttl_seconds") or 7 * 24 * 3600)
    # One batch: the link, with its Firestore TTL backstop (the link and its access log go with the tenant's
    # retention), and its id on the delivery (so a retry revokes a link whose e-mail never went out).
    batch = clients.firestore().batch()
    token, lid, expires_at = links.create_link(tenant_id=tenant_id, event_id=link_event, recipient=recipient,
                                               ttl_seconds=ttl, now=now, batch=batch,
                                               keep_days=pipeline.retention_days(tenant))
    batch.update(ref, {"link_id": lid})
    batch.commit()
    mid = message_id(event_id + (":escalated" if escalation else ""), recipient)
    message = build_message(event=event, tenant=tenant, recipient=recipient, token=token, expires_at=expires_at,
                            snapshot=snapshot, message_id=mid, now=now, escalation=escalation,
                            composed_at=now + dt.timedelta(seconds=time.monotonic() - started) if started else None)
    try:
        smtp_attempts = mailer.send(message, before_attempt=claim.renew)
        accepted_at = dt.datetime.now(dt.timezone.utc)
    except ClaimLost:
        log.warning("alert: %s/%s delivery %s taken over by another delivery; not sent here", tenant_id, owner, did)
        raise
    except PermanentSmtpError as exc:
        log.warning("alert: %s/%s delivery %s refused for good: %s", tenant_id, event_id, did, exc)
        ref.update({"status": "failed", "permanent": True, "last_error": str(exc)[:200],
                    "smtp_attempts": getattr(mailer, "last_attempts", 1)})
        links.revoke(lid)
        return None
    except Exception as exc:
        if isinstance(exc, gexc.GoogleAPICallError):  # renewing the claim failed: nothing sent in that attempt
            raise
        log.warning("alert: %s/%s delivery %s failed: %s", tenant_id, event_id, did, type(exc).__name__)
        ref.update({"status": "failed", "last_error": f"{type(exc).__name__}: {str(exc)[:200]}",
                    "smtp_attempts": getattr(mailer, "last_attempts", 1)})
        raise
    batch = clients.firestore().batch()
    batch.update(ref, {"status": "sent", "sent_at": fs.SERVER_TIMESTAMP,
                       "smtp_attempts": smtp_attempts if isinstance(smtp_attempts, int) else 1})
    usage.add(tenant_id, now=now, batch=batch, emails_sent=1)
    batch.commit()
    log.info("alert: %s/%s delivery %s sent (link %s…)", tenant_id, owner, did, lid[:12])
    return accepted_at


def webhook_delivery_id(url: str) -> str:
    """The delivery document id of a webhook endpoint: ``sha256("webhook:" + url)[:32]`` (hex)."""
    return hashlib.sha256(f"webhook:{url}".encode()).hexdigest()[:32]


def _deliver_webhook(tenant_id: str, event_id: str, event: Mapping[str, Any], tenant: Mapping[str, Any],
                     now: dt.datetime) -> bool:
    """POSTs the signed webhook unless already delivered. Returns True if delivered now.

    Raises:
        webhook.WebhookError: the endpoint kept failing (recorded as ``failed``; permanent ones are not raised).
        vigint.pipeline.InProgress: another delivery holds the claim (lease ``webhook_lease_s``).
    """
    hook = (tenant.get("alert") or {}).get("webhook") or {}
    url, secret = str(hook.get("url") or ""), str(hook.get("secret") or "")
    ref = pipeline.event_ref(tenant_id, event_id).collection("deliveries").document(webhook_delivery_id(url))
    s = config.settings()
    claim = _claim(ref, url, now, kind="webhook", lease_s=webhook_lease_s(s.webhook_timeout_s))
    if claim is None:
        return False
    try:
        result = webhook.post(url, secret, webhook.payload(event=event, tenant_id=tenant_id),
                              timeout_s=s.webhook_timeout_s, attempts=s.webhook_retry_attempts,
                              initial_s=s.webhook_retry_initial_s, before_attempt=claim.renew)
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
                  now: dt.datetime, escalation: Mapping[str, Any] | None = None,
                  composed_at: dt.datetime | None = None) -> EmailMessage:
    """The alert e-mail: multipart/alternative (text, and HTML related with the inline snapshot).

    The link is ``{VIGINT_PUBLIC_BASE_URL}/v/{token}``. For a schema version 2 event the e-mail also says
    when the object was first seen (the tenant's time zone, ``pipeline.tenant_timezone``, with UTC in
    brackets), whether the event is still going or ended (and its length), whether it is late
    (``alert.late_s``, see ``late_seconds``) and, in its footer, "First seen → this e-mail: N.N s" (from
    ``timeline.first_seen`` to ``composed_at``, default the clock). ``escalation`` (see ``_escalate_once``)
    makes it the escalation e-mail: subject "Escalated ...", what changed (level and title before → after).
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
    ctx.update(_lifecycle_context(event, tenant, escalation, composed_at))
    ctx["integrity_words"] = render.integrity_words(event)
    msg = EmailMessage()
    subject = f"[Vigint] {'Camera health' if health else ctx['threat_word']}: {ctx['title']}"
    if escalation:
        subject = f"[Vigint] Escalated to {ctx['threat_word']}: {ctx['title']}"
    if unavailable:
        subject += " (analysis unavailable)"
    if ctx["late_words"]:
        subject += " (late)"
    if ctx["integrity_words"]:
        subject += " (evidence check failed)"
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


def _lifecycle_context(event: Mapping[str, Any], tenant: Mapping[str, Any], escalation: Mapping[str, Any] | None,
                       composed_at: dt.datetime | None) -> dict:
    """The template variables of a schema version 2 alert (``lifecycle`` False and the rest empty for v1)."""
    if event.get("schema_version") != 2:
        return {"lifecycle": False, "first_seen_words": "", "ended": True, "length_words": "", "late_words": "",
                "escalation": None, "latency_s": ""}
    timeline = event.get("timeline") or {}
    first_seen = _as_utc(timeline.get("first_seen")) or _as_utc(event.get("first_seen"))
    composed_at = composed_at or dt.datetime.now(dt.timezone.utc)
    start, end = _as_utc(event.get("start_time")), _as_utc(event.get("end_time"))
    ended = bool(event.get("ended"))
    late = (event.get("alert") or {}).get("late_s")
    esc = None
    if escalation:
        esc = {"from_word": render.THREAT_WORDS.get(int(escalation.get("from_level") or 0), "?"),
               "from_title": escalation.get("from_title") or "", "to_word":
               render.THREAT_WORDS.get(int(escalation.get("to_level") or 0), "?"),
               "to_title": escalation.get("to_title") or ""}
    return {
        "lifecycle": True,
        "first_seen_words": render.local_and_utc_words(first_seen, pipeline.tenant_timezone(tenant)),
        "ended": ended,
        "length_words": render.short_duration((end - start).total_seconds()) if ended and start and end else "",
        "late_words": (f"delivered {render.short_duration(float(late))} late: the device could not reach the "
                       "cloud sooner (offline or no network)") if late else "",
        "escalation": esc,
        "latency_s": f"{(composed_at - first_seen).total_seconds():.1f}" if first_seen else "",
    }
