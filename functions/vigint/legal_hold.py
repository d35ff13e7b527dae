"""Legal hold: evidence that retention, erasure and tenant deletion must keep until an admin releases it.

A hold is a record ``tenants/{t}/holds/{hold_id}``::

    {"hold_id", "kind": "event" | "camera", "event_id" (kind event), "camera_id" (kind camera),
     "start", "end" (kind camera: the held time range, UTC), "reason", "created_at", "created_by": actor,
     "released_at": None | datetime, "released_by": None | actor, "release_reason"}

An event hold's id is ``event-{event_id}`` (one per event; placing it again while active changes nothing, after
a release it is placed anew). A camera hold's id is ``hold_{16 hex}``; its active range is also listed in
``tenants/{t}/camera_holds/{camera_id}`` (``ranges.{hold_id}: {start, end}``), which ingest reads with the
tenant document in one ``get_all``, so an event that arrives inside a held range is held from its first write.

An event is held while ``hold_ids`` (array of hold ids on the event document) is not empty; ``held: true``
says so for the deleting paths (``vigint.retention``: retention, camera erase and tenant deletion skip it).
While held, the Firestore TTL backstop must not take it: the ``expire_at`` of the event document, of its
``messages``/``segments``/``deliveries`` and of its ``links`` is moved to ``held_expire_at`` and moved back at
release (an event released after its retention is then removed by the next retention run, or by the TTL
policy). In Cloud Storage each object of the event gets a temporary hold (``temporaryHold``), which stops any
deletion, the bucket's lifecycle rule included, until it is cleared at release
(https://cloud.google.com/storage/docs/object-holds); objects uploaded after the hold (an event still being
recorded) get theirs from the next housekeeping run (``sync_object_holds``, flag ``hold_objects_pending``).
fake-gcs-server keeps no holds (it accepts the update and ignores it, checked), so locally the Firestore flag
is what protects the evidence.

Every hold and release is an audit entry (``vigint.audit``: ``event.hold``, ``event.release``,
``camera.hold``, ``camera.release``).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import audit, clients, config, pipeline
from vigint.schema import event_prefix

log = logging.getLogger(__name__)

HOLDS = "holds"
CAMERA_HOLDS = "camera_holds"
MAX_REASON = 500
# Subcollections of an event whose documents may carry expire_at (the TTL backstop).
EVENT_SUBCOLLECTIONS = ("messages", "segments", "deliveries")


class HoldError(ValueError):
    """The hold cannot be placed or released; ``status`` is the HTTP answer (404 unknown, 409 conflict)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def holds_col(tenant_id: str):
    """``tenants/{t}/holds``."""
    return pipeline.tenant_ref(tenant_id).collection(HOLDS)


def camera_holds_ref(tenant_id: str, camera_id: str):
    """``tenants/{t}/camera_holds/{camera_id}``: ``{"ranges": {hold_id: {"start", "end"}}}``."""
    return pipeline.tenant_ref(tenant_id).collection(CAMERA_HOLDS).document(camera_id)


def event_hold_id(event_id: str) -> str:
    """The id of an event's own hold."""
    return f"event-{event_id}"


def covering_holds(ranges: Mapping[str, Any] | None, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The ids of the ``ranges`` (``{hold_id: {"start", "end"}}``) that overlap ``[start, end]``, sorted."""
    out = []
    for hold_id, r in (ranges or {}).items():
        rs, re_ = pipeline.as_utc((r or {}).get("start")), pipeline.as_utc((r or {}).get("end"))
        if rs is not None and re_ is not None and rs <= end and start <= re_:
            out.append(hold_id)
    return sorted(out)


# ------------------------------------------------------------------------------------- per-event mechanics


def _set_object_holds(tenant_id: str, event: Mapping[str, Any], event_id: str, hold: bool) -> int:
    """Sets (or clears) ``temporaryHold`` on every object under the event's prefix; returns how many."""
    device_id = event.get("device_id")
    if not device_id:
        return 0
    n = 0
    for blob in clients.storage().list_blobs(config.settings().bucket, prefix=event_prefix(tenant_id, device_id, event_id)):
        if bool(blob.temporary_hold) == hold:  # absent (None) is no hold
            continue
        blob.temporary_hold = hold
        try:
            blob.patch()  # storage.objects.update (terraform/iam.tf: the object-holder role)
            n += 1
        except gexc.NotFound:
            pass
    return n


def _docs_with_ttl(tenant_id: str, event_id: str):
    """The event's subcollection documents and links (each may carry ``expire_at``)."""
    ref = pipeline.event_ref(tenant_id, event_id)
    for name in EVENT_SUBCOLLECTIONS:
        yield from ref.collection(name).stream()
    yield from (clients.firestore().collection("links")
                .where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
                .where(filter=fs.FieldFilter("event_id", "==", event_id)).stream())


def _park_ttl(tenant_id: str, event_id: str, held: bool) -> int:
    """Held: moves each document's ``expire_at`` to ``held_expire_at``; released: back. Returns documents changed."""
    n = 0
    for snap in _docs_with_ttl(tenant_id, event_id):
        d = snap.to_dict() or {}
        if held and d.get("expire_at") is not None:
            snap.reference.update({"held_expire_at": d["expire_at"], "expire_at": fs.DELETE_FIELD})
            n += 1
        elif not held and "held_expire_at" in d:
            snap.reference.update({"expire_at": d["held_expire_at"], "held_expire_at": fs.DELETE_FIELD})
            n += 1
    return n


def _change_event(tenant_id: str, event_id: str, *, add: str | None = None, remove: str | None = None,
                  now: dt.datetime, sync: bool = False) -> tuple[bool, bool, dict, list[str]] | None:
    """Adds/removes one hold id on the event (one optimistic read-modify-write); then, when the event became held
    or released (or always with ``sync``: a retried call finishes what an interrupted one left), parks/restores
    the TTL fields of its documents and links and sets/clears its object holds (both idempotent).

    Returns:
        ``(was_held, is_held, event as read before the change, hold ids after it)``, or None when the event
        does not exist.
    """
    ref = pipeline.event_ref(tenant_id, event_id)

    def txn(tx):
        snap = tx.get(ref)
        if not snap.exists:
            return None
        ev = snap.to_dict() or {}
        ids = [h for h in (ev.get("hold_ids") or []) if h != remove]
        if add and add not in ids:
            ids.append(add)
        was, now_held = bool(ev.get("held")), bool(ids)
        if ids == list(ev.get("hold_ids") or []) and was == now_held:
            return was, now_held, ev, ids
        fields: dict = {"hold_ids": ids, "held": now_held}
        if now_held and not was:
            fields["hold_objects_pending"] = True
            if ev.get("expire_at") is not None:
                fields.update({"held_expire_at": ev["expire_at"], "expire_at": fs.DELETE_FIELD})
        elif was and not now_held:
            fields["hold_objects_pending"] = False
            restored = pipeline.as_utc(ev.get("held_expire_at"))
            if restored is None:
                end = pipeline.as_utc(ev.get("end_time")) or now
                tenant = pipeline.tenant_ref(tenant_id).get()
                restored = end + dt.timedelta(days=pipeline.retention_days(tenant.to_dict() if tenant.exists else {}))
            fields.update({"expire_at": restored, "held_expire_at": fs.DELETE_FIELD})
        tx.update(ref, fields)
        return was, now_held, ev, ids

    got = pipeline.run_optimistic(txn, what=f"{ref.path}: legal hold")
    if got is None:
        return None
    was, is_held, ev, _ = got
    if was != is_held or sync:
        _park_ttl(tenant_id, event_id, is_held)
        _set_object_holds(tenant_id, ev, event_id, is_held)
        if is_held:
            ref.update({"hold_objects_pending": False})
    return got


def sync_object_holds(tenant_id: str) -> int:
    """Puts temporary holds on the objects of held events that gained objects since (``hold_objects_pending``:
    set by the hold, and by ingest on each message of a held event); the housekeeping run calls this.
    Returns the number of events brought up to date."""
    n = 0
    pending = (pipeline.tenant_ref(tenant_id).collection("events")
               .where(filter=fs.FieldFilter("hold_objects_pending", "==", True)).stream())
    for snap in pending:
        ev = snap.to_dict() or {}
        if ev.get("held"):
            _set_object_holds(tenant_id, ev, snap.id, True)
            _park_ttl(tenant_id, snap.id, True)  # documents written by ingest since the hold
        snap.reference.update({"hold_objects_pending": False})
        n += 1
    return n


# ------------------------------------------------------------------------------------------- operations


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise HoldError(400, f"reason must be 1..{MAX_REASON} characters")
    return reason


def hold_out(snap_or_doc, hold_id: str | None = None) -> dict:
    """A hold record as the API shows it."""
    if isinstance(snap_or_doc, Mapping):
        d = dict(snap_or_doc)
    else:
        d = snap_or_doc.to_dict() or {}
        hold_id = snap_or_doc.id
    d["hold_id"] = hold_id or d.get("hold_id")
    d["active"] = d.get("released_at") is None
    return d


def hold_event(tenant_id: str, event_id: str, *, reason: str, actor: Mapping[str, str],
               now: dt.datetime | None = None) -> dict:
    """Places the event's own hold (idempotent while active).

    Returns:
        The hold record (``hold_out``) with ``hold_ids`` of the event.

    Raises:
        HoldError: 400 bad reason, 404 unknown event.
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed (safe to call again).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    reason = _reason(reason)
    hold_id = event_hold_id(event_id)
    ref = holds_col(tenant_id).document(hold_id)
    snap = ref.get()
    existing = snap.to_dict() if snap.exists else None
    ev = pipeline.event_ref(tenant_id, event_id).get()
    if not ev.exists or "event_id" not in (ev.to_dict() or {}):  # a placeholder (continued_by only) is no event
        raise HoldError(404, "event not found")
    if existing is not None and existing.get("released_at") is None:
        got = _change_event(tenant_id, event_id, add=hold_id, now=now, sync=True)  # completes an interrupted hold
        return {**hold_out(existing, hold_id), "event_hold_ids": got[3] if got else []}
    record = {"hold_id": hold_id, "kind": "event", "event_id": event_id, "camera_id": None, "start": None,
              "end": None, "reason": reason, "created_at": now, "created_by": dict(actor), "released_at": None,
              "released_by": None, "release_reason": None}
    ref.set(record)  # the record first: a hold interrupted before the event is marked is completed by a retry
    got = _change_event(tenant_id, event_id, add=hold_id, now=now)
    audit.record(tenant_id, actor=actor, action="event.hold", target_kind="event", target_id=event_id,
                 details={"hold_id": hold_id, "reason": reason[:200]}, now=now)
    log.info("legal hold: %s/%s held (%s)", tenant_id, event_id, hold_id)
    return {**hold_out(record, hold_id), "event_hold_ids": got[3] if got else []}


def _release_record(tenant_id: str, hold_id: str, *, kind: str, camera_id: str | None = None) -> dict:
    """The active hold record ``hold_id`` of that kind (and camera). Raises HoldError 404/409."""
    ref = holds_col(tenant_id).document(hold_id)
    snap = ref.get()
    d = snap.to_dict() if snap.exists else None
    if d is None or d.get("kind") != kind or (camera_id is not None and d.get("camera_id") != camera_id):
        raise HoldError(404, "hold not found")
    if d.get("released_at") is not None:
        raise HoldError(409, "hold already released")
    return d


def release_event(tenant_id: str, event_id: str, *, actor: Mapping[str, str], reason: str | None = None,
                  now: dt.datetime | None = None) -> dict:
    """Releases the event's own hold; the event stays held while a camera hold covers it.

    Returns:
        The released hold record with ``event_hold_ids`` (the holds still on the event).

    Raises:
        HoldError: 404 no active hold of the event, 409 released already.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    hold_id = event_hold_id(event_id)
    d = _release_record(tenant_id, hold_id, kind="event")
    # The record is marked released last: a release interrupted before is done again in full (sync).
    got = _change_event(tenant_id, event_id, remove=hold_id, now=now, sync=True)
    update = {"released_at": now, "released_by": dict(actor), "release_reason": (reason or "")[:MAX_REASON] or None}
    holds_col(tenant_id).document(hold_id).update(update)
    audit.record(tenant_id, actor=actor, action="event.release", target_kind="event", target_id=event_id,
                 details={"hold_id": hold_id, "still_held": bool(got and got[1])}, now=now)
    return {**hold_out({**d, **update}, hold_id), "event_hold_ids": got[3] if got else []}


def _camera_events(tenant_id: str, camera_id: str, start: dt.datetime, end: dt.datetime):
    """The camera's events overlapping ``[start, end]``: ``camera_id ==`` and ``start_time <= end``, newest
    first (the composite index camera_id ASC + start_time DESC of terraform/firestore.tf serves it),
    ``end_time >= start`` checked here."""
    q = (pipeline.tenant_ref(tenant_id).collection("events")
         .where(filter=fs.FieldFilter("camera_id", "==", camera_id))
         .where(filter=fs.FieldFilter("start_time", "<=", end))
         .order_by("start_time", direction=fs.Query.DESCENDING))
    for snap in q.stream():
        ev = snap.to_dict() or {}
        ev_end = pipeline.as_utc(ev.get("end_time")) or pipeline.as_utc(ev.get("start_time"))
        if ev_end is not None and ev_end >= start:
            yield snap


def hold_camera(tenant_id: str, camera_id: str, *, start: dt.datetime, end: dt.datetime, reason: str,
                actor: Mapping[str, str], now: dt.datetime | None = None) -> dict:
    """Holds every event of the camera that overlaps ``[start, end]`` (UTC), now and when one arrives later.

    Returns:
        The hold record with ``events``: how many stored events it holds now.

    Raises:
        HoldError: 400 bad reason or ``end`` not after ``start``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    reason = _reason(reason)
    if end <= start:
        raise HoldError(400, "end must be after start")
    hold_id = f"hold_{secrets.token_hex(8)}"
    record = {"hold_id": hold_id, "kind": "camera", "event_id": None, "camera_id": camera_id, "start": start,
              "end": end, "reason": reason, "created_at": now, "created_by": dict(actor), "released_at": None,
              "released_by": None, "release_reason": None}
    batch = clients.firestore().batch()
    batch.create(holds_col(tenant_id).document(hold_id), record)
    # The range first (in the same batch as the record), then the stored events: an event ingested meanwhile is
    # held by ingest, one stored before by the loop below.
    batch.set(camera_holds_ref(tenant_id, camera_id), {"ranges": {hold_id: {"start": start, "end": end}}}, merge=True)
    batch.commit()
    n = 0
    for snap in _camera_events(tenant_id, camera_id, start, end):
        if _change_event(tenant_id, snap.id, add=hold_id, now=now) is not None:
            n += 1
    audit.record(tenant_id, actor=actor, action="camera.hold", target_kind="camera", target_id=camera_id,
                 details={"hold_id": hold_id, "start": start.isoformat(), "end": end.isoformat(),
                          "reason": reason[:200], "events": n}, now=now)
    log.info("legal hold: camera %s/%s %s..%s held (%s, %d events)", tenant_id, camera_id, start.isoformat(),
             end.isoformat(), hold_id, n)
    return {**hold_out(record, hold_id), "events": n}


def release_camera(tenant_id: str, camera_id: str, hold_id: str, *, actor: Mapping[str, str],
                   reason: str | None = None, now: dt.datetime | None = None) -> dict:
    """Releases a camera hold: its range stops holding new events, and its events lose this hold (an event
    stays held while another hold covers it).

    Returns:
        The released record with ``events``: how many events it released from this hold.

    Raises:
        HoldError: 404 unknown hold (or another camera's), 409 released already.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    d = _release_record(tenant_id, hold_id, kind="camera", camera_id=camera_id)
    camera_holds_ref(tenant_id, camera_id).set({"ranges": {hold_id: fs.DELETE_FIELD}}, merge=True)
    n = 0
    held = (pipeline.tenant_ref(tenant_id).collection("events")
            .where(filter=fs.FieldFilter("hold_ids", "array_contains", hold_id)).stream())
    for snap in held:
        if _change_event(tenant_id, snap.id, remove=hold_id, now=now) is not None:
            n += 1
    # (An event whose release was interrupted after its hold id went is finished by the retention path:
    # Firestore says it is not held, and a leftover object hold is cleared before the object is deleted.)
    update = {"released_at": now, "released_by": dict(actor), "release_reason": (reason or "")[:MAX_REASON] or None}
    holds_col(tenant_id).document(hold_id).update(update)
    audit.record(tenant_id, actor=actor, action="camera.release", target_kind="camera", target_id=camera_id,
                 details={"hold_id": hold_id, "events": n}, now=now)
    return {**hold_out({**d, **update}, hold_id), "events": n}


def list_camera_holds(tenant_id: str, camera_id: str) -> list[dict]:
    """The camera's holds (active and released), newest first."""
    snaps = holds_col(tenant_id).where(filter=fs.FieldFilter("camera_id", "==", camera_id)).stream()
    out = [hold_out(s) for s in snaps]
    return sorted(out, key=lambda h: (pipeline.as_utc(h.get("created_at")) or dt.datetime.min.replace(
        tzinfo=dt.timezone.utc), h["hold_id"]), reverse=True)
