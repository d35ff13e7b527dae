"""Handlers: events (``/v1/events``) and alerts (``/v1/alerts``), with cursor pagination.

Ordering is ``start_time`` descending, then event id descending (Firestore ``__name__``), so pages are
stable while new events arrive. The cursor is opaque to clients: base64url of
``{"t": start_time RFC3339 (microseconds), "id": event_id}`` of the last event of the page.

Which filters Firestore applies and which are applied in memory:

* Firestore: ``since``/``until`` (range on ``start_time``), ``camera_id``, ``severity``, ``kind`` (equality),
  ``label`` (``array_contains`` on ``labels``), ``zone`` (``array_contains`` on ``zones``, only when no
  ``label`` is given: one ``array_contains`` per query), alerts' ``alert.alerted == true`` and
  ``acknowledged=true``.
* In memory: ``zone`` together with ``label``, ``min_threat_level`` (``analysis.threat_level``), and
  ``acknowledged=false``. Such a request scans at most ``MAX_SCAN`` events: if the page is not full by
  then, the answer holds the matches found so far (possibly none) and a ``next_cursor`` to continue from
  the last event scanned. A null ``next_cursor`` always means there is nothing more.

In Google Cloud the equality/array filters combined with the ``start_time`` order need composite indexes
on ``events`` (the emulator needs none).

Acknowledgement: ``tenants/{t}/events/{e}.ack = {acknowledged: true, by: <API key user name>,
key_id, at}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from typing import Any

from google.cloud import firestore as fs

from vigint import config, pipeline, storage
from vigint.schema import EVENT_ID_PATTERN, event_prefix
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request, not_found

log = logging.getLogger(__name__)

MAX_SCAN = 500
PARAMS = {"event_id": EVENT_ID_PATTERN}


# -------------------------------------------------------------------------------------------- cursor


def encode_cursor(start_time: dt.datetime, event_id: str) -> str:
    """The opaque cursor after the event (``start_time`` UTC, ``event_id``)."""
    t = start_time.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raw = json.dumps({"t": t, "id": event_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Inverse of ``encode_cursor``.

    Raises:
        ApiError: 400 (field ``cursor``) for anything that is not a cursor of this API.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        t = dt.datetime.strptime(data["t"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        event_id = data["id"]
        import re

        if not isinstance(event_id, str) or not re.match(EVENT_ID_PATTERN, event_id):
            raise ValueError("bad id")
        return t, event_id
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "cursor: not a valid cursor", "cursor") from None


# ----------------------------------------------------------------------------------------- scanning


def events_col(tenant_id: str):
    return pipeline.tenant_ref(tenant_id).collection("events")


def field_of(doc: dict, path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def scan_page(query, *, limit: int, cursor: str | None, keep=None,
              order_field: str = "start_time") -> tuple[list, str | None]:
    """One page of ``query`` (already filtered, not yet ordered) in the API's order: ``order_field``
    descending, then document id descending.

    Args:
        query: a Firestore query on one tenant's events (or a device's commands, ``order_field="created_at"``).
        limit: page size (1..100).
        cursor: the previous page's ``next_cursor``.
        keep: optional in-memory predicate ``f(doc dict) -> bool``.
        order_field: the timestamp field the listing is ordered by, also the cursor's time.

    Returns:
        ``(snapshots, next_cursor)``.

    Raises:
        ApiError: 400 (field ``cursor``) for a cursor that is not one of this API.
    """
    q = query.order_by(order_field, direction=fs.Query.DESCENDING).order_by(
        "__name__", direction=fs.Query.DESCENDING)
    after: Any = None
    if cursor:
        t, doc_id = decode_cursor(cursor)
        after = {order_field: t, "__name__": doc_id}
    found: list = []
    scanned = 0
    batch = limit + 1 if keep is None else 100
    last = None
    while True:
        page_q = q.start_after(after) if after is not None else q
        snaps = list(page_q.limit(batch).stream())
        for snap in snaps:
            scanned += 1
            last = snap
            if keep is None or keep(snap.to_dict()):
                found.append(snap)
                if len(found) == limit + 1:
                    page = found[:limit]
                    return page, encode_cursor(page[-1].get(order_field), page[-1].id)
            if keep is not None and scanned >= MAX_SCAN:
                return found, encode_cursor(last.get(order_field), last.id)
        if len(snaps) < batch:
            return found, None
        after = last


def summary(snap) -> m.EventSummary:
    d = snap.to_dict()
    fields = {k: v for k, v in d.items() if k in m.EventSummary.model_fields and k not in
              ("event_id", "threat_level", "title", "alerted", "acknowledged")}
    tl = field_of(d, "analysis.threat_level")
    title = field_of(d, "analysis.title")
    return m.EventSummary(
        event_id=snap.id, **fields,
        threat_level=tl if isinstance(tl, int) else None,
        title=title if isinstance(title, str) else None,
        alerted=bool(field_of(d, "alert.alerted")) if isinstance(d.get("alert"), dict) else None,
        acknowledged=bool(field_of(d, "ack.acknowledged")),
    )


def _range(q, since, until):
    if since is not None:
        q = q.where(filter=fs.FieldFilter("start_time", ">=", since))
    if until is not None:
        q = q.where(filter=fs.FieldFilter("start_time", "<", until))
    return q


def filtered_query(tenant_id: str, f: m.EventsQuery, camera_ids: list[str] | None = None):
    """The tenant's events query of ``GET /v1/events`` for the filters of ``f`` (time range, camera, severity,
    kind, label or else zone; ``min_threat_level`` and a zone together with a label are ``in_memory_keep``'s).

    Args:
        camera_ids: instead of ``f.camera_id``, events of these cameras (a Firestore ``in``, at most 30 values:
            https://firebase.google.com/docs/firestore/query-data/queries#limits_on_or_queries); None: no such
            restriction. The console uses it for site-limited users.
    """
    q = _range(events_col(tenant_id), f.since, f.until)
    if camera_ids is not None:
        q = q.where(filter=fs.FieldFilter("camera_id", "==", camera_ids[0]) if len(camera_ids) == 1
                    else fs.FieldFilter("camera_id", "in", list(camera_ids)))
    elif f.camera_id:
        q = q.where(filter=fs.FieldFilter("camera_id", "==", f.camera_id))
    if f.severity:
        q = q.where(filter=fs.FieldFilter("severity", "==", f.severity))
    if f.kind:
        q = q.where(filter=fs.FieldFilter("kind", "==", f.kind))
    if f.label:
        q = q.where(filter=fs.FieldFilter("labels", "array_contains", f.label))
    elif f.zone:
        q = q.where(filter=fs.FieldFilter("zones", "array_contains", f.zone))
    return q


def in_memory_keep(f: m.EventsQuery, also=None):
    """The document test of the filters Firestore cannot combine in one query (a zone with a label: one
    ``array_contains`` per query; the minimum threat level, a field not every event has), and ``also(doc)`` if
    given; None when there is nothing to test."""
    zone_in_memory = bool(f.zone and f.label)
    if not (zone_in_memory or f.min_threat_level is not None or also is not None):
        return None

    def keep(d: dict) -> bool:
        if zone_in_memory and f.zone not in (d.get("zones") or []):
            return False
        if f.min_threat_level is not None:
            tl = field_of(d, "analysis.threat_level")
            if not isinstance(tl, int) or tl < f.min_threat_level:
                return False
        return also is None or also(d)

    return keep


# ------------------------------------------------------------------------------------------ handlers


def list_events(req: Request):
    """``GET /v1/events``: one page of ``EventSummary`` (``EventPage``), filtered by ``EventsQuery``.

    ``kind`` (``detection`` | ``camera_health`` | ``recording``) lists only that kind; without it, all kinds.

    Raises:
        ApiError: 400 (field ``cursor``) for a cursor that is not one of this API.
    """
    f: m.EventsQuery = req.query
    q = filtered_query(req.tenant_id, f)
    keep = in_memory_keep(f)
    snaps, nxt = scan_page(q, limit=f.limit, cursor=f.cursor, keep=keep)
    return m.EventPage(events=[summary(s) for s in snaps], next_cursor=nxt), 200


def _event_snap(req: Request):
    snap = events_col(req.tenant_id).document(req.params["event_id"]).get()
    # A placeholder (only continued_by: its continuation arrived first) is no event yet.
    if not snap.exists or "event_id" not in (snap.to_dict() or {}):
        raise not_found("event not found")
    return snap


def get_event(req: Request):
    """``GET /v1/events/{event_id}``: the event, its analysis, fresh signed snapshot and clip URLs."""
    snap = _event_snap(req)
    d = snap.to_dict()
    base = summary(snap).model_dump()
    extra = {k: d.get(k) for k in ("max_count", "detections", "zone_events", "analysis", "alert", "ack", "clip",
                                   "snapshot", "ingested_at")}
    extra = {k: v for k, v in extra.items() if v is not None}
    prefix = event_prefix(req.tenant_id, str(d.get("device_id")), snap.id)
    ttl = config.settings().playback_url_ttl_seconds
    urls: dict[str, Any] = {}
    for kind, name in (("clip", "clip.mp4"), ("snapshot", "snapshot.jpg")):
        obj = field_of(d, f"{kind}.object")
        if obj != prefix + name:  # only the event's own object, under its tenant and device
            continue
        try:
            url, expires_at = storage.signed_url(obj, method="GET", ttl_seconds=ttl, now=req.now)
        except storage.SigningError:
            log.error("tenant_api: cannot sign URLs (no signing credentials configured)")
            break
        urls[f"{kind}_url"], urls["urls_expire_at"] = url, expires_at
    return m.EventDetail(**base, **extra, **urls), 200


def list_alerts(req: Request):
    """``GET /v1/alerts``: events with ``alert.alerted``, newest first."""
    f: m.AlertsQuery = req.query
    q = _range(events_col(req.tenant_id), f.since, f.until).where(filter=fs.FieldFilter("alert.alerted", "==", True))
    if f.camera_id:
        q = q.where(filter=fs.FieldFilter("camera_id", "==", f.camera_id))
    keep = None
    if f.acknowledged is True:
        q = q.where(filter=fs.FieldFilter("ack.acknowledged", "==", True))
    elif f.acknowledged is False:
        def keep(d: dict) -> bool:
            return not field_of(d, "ack.acknowledged")
    snaps, nxt = scan_page(q, limit=f.limit, cursor=f.cursor, keep=keep)
    return m.EventPage(events=[summary(s) for s in snaps], next_cursor=nxt), 200


def ack_alert(req: Request):
    """``POST /v1/alerts/{event_id}/ack``: idempotent; the first acknowledgement is kept."""
    snap = _event_snap(req)
    d = snap.to_dict()
    if not field_of(d, "alert.alerted"):
        raise not_found("alert not found")
    ack = d.get("ack") if isinstance(d.get("ack"), dict) else {}
    if not ack.get("acknowledged"):
        ack = {"acknowledged": True, "by": req.principal.name, "key_id": req.principal.key_id, "at": req.now}
        snap.reference.update({"ack": ack})
        log.info("alert %s/%s acknowledged by key %s", req.tenant_id, snap.id, req.principal.key_id)
    return m.AckOut(event_id=snap.id, acknowledged=True, acknowledged_by=str(ack.get("by") or ""),
                    acknowledged_at=ack.get("at") or req.now), 200


def unacknowledged_count(req: Request):
    """``GET /v1/alerts/unacknowledged-count``: Firestore count aggregations (alerted minus acknowledged)."""
    alerted = events_col(req.tenant_id).where(filter=fs.FieldFilter("alert.alerted", "==", True))
    acked = alerted.where(filter=fs.FieldFilter("ack.acknowledged", "==", True))

    def count(q) -> int:
        return int(q.count(alias="n").get()[0][0].value)

    return m.UnacknowledgedCount(unacknowledged=max(0, count(alerted) - count(acked))), 200
