"""Retention and housekeeping: what the scheduled ``retention`` function does, and deletion on request.

Scheduled (``run_housekeeping``, the ``retention`` HTTP function called by Cloud Scheduler; in Google Cloud
the function is private and Scheduler authenticates with an OIDC token, which the platform checks before
our code runs; locally it is callable as is):

* per tenant, with ``retention_days`` (tenant field, else ``VIGINT_RETENTION_DAYS``, default 30): events
  whose ``end_time`` is older than that are deleted with their deliveries (and a lifecycle event's
  ``messages`` and ``segments``), their links (and access logs) and their GCS objects (segments and
  snapshots included); links created before the cut-off, device commands created before it (whatever
  their status: one still pending that long will never be useful) and any object under ``tenants/{t}/``
  created before it (orphans: uploads of events that never got stored) are deleted too. Event and link documents
  also carry ``expire_at`` so a Firestore TTL policy is the backstop;
* stale devices: an active device whose ``last_heartbeat_at`` is older than ``N x interval``
  (``VIGINT_STALE_HEARTBEAT_INTERVALS`` x ``VIGINT_HEARTBEAT_INTERVAL_SECONDS``, per-device
  ``heartbeat_interval_seconds`` overrides the interval) gets one ``camera_health`` event (label
  ``device_offline``, camera id = device id) per silent spell, which goes through analyze and alert like any
  other (published on ``events-ingested``).

On request (for the tenant API and operator tools): ``delete_camera`` and ``delete_tenant`` remove every
document and object they own, and return counts.

Erasure and deletion last (issue 14): before deleting anything, ``delete_camera`` writes the tombstone
``tenants/{t}/erasures/{camera_id}`` (``erased_before``: the erase time) and ``delete_tenant`` the top-level
``deleted_tenants/{t}`` (``deleted_at``, the devices' last ``key_versions``), which the tenant's own deletion
cannot take with it. ``vigint.ingest`` drops (counts and acknowledges) every message of an event of that
camera/tenant that started at or before that time (``erased``, ``tenant_deleted``): a replay, a late
redelivery or an edge that was offline during the erase cannot bring the events back. ``edge_api`` refuses
the devices of a deleted tenant; a device created again under a re-created tenant starts at a key version
above the recorded one (``first_key_version``), so the old box's secret does not work for it.

Legal hold (``vigint.legal_hold``): an event with ``held: true`` is skipped by retention, erase and tenant
deletion (counted as ``held_kept``), with its documents, links and objects; once released, the next run
deletes it. A deleted tenant that kept held events stays listed in ``deleted_tenants`` with ``pending_held``
and each housekeeping run calls ``delete_tenant`` again for it, which deletes what was released meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, pipeline
from vigint.schema import SLUG_PATTERN, event_prefix

log = logging.getLogger(__name__)


def _bucket():
    return clients.storage().bucket(config.settings().bucket)


def _delete_objects(prefix: str, older_than: dt.datetime | None = None, keep=None) -> int:
    """Deletes objects under ``prefix`` (only those created before ``older_than`` if given, and not those for
    which ``keep(object_name)`` is true); returns the count."""
    n = 0
    for blob in clients.storage().list_blobs(config.settings().bucket, prefix=prefix):
        created = pipeline.as_utc(blob.time_created)
        if older_than is not None and created is not None and created >= older_than:
            continue
        if keep is not None and keep(blob.name):
            continue
        try:
            blob.delete()
            n += 1
        except gexc.NotFound:
            pass
        except gexc.Forbidden:
            # A temporary hold left on an object whose event is no longer held (a release that stopped before
            # clearing it): Firestore says what is held, so the hold goes and the object with it.
            if _clear_stale_hold(blob):
                n += 1
    return n


def _clear_stale_hold(blob) -> bool:
    """Clears ``blob``'s temporary hold and deletes it; False (logged) if it cannot."""
    try:
        blob.reload()
        if not blob.temporary_hold:
            raise PermissionError("delete refused without a temporary hold")
        blob.temporary_hold = False
        blob.patch()
        blob.delete()
        return True
    except (gexc.GoogleAPICallError, PermissionError) as exc:
        log.error("retention: could not delete %s: %s", blob.name, exc)
        return False


def _delete_links(docs, keep=None) -> int:
    """Deletes each link with its access log, but not those for which ``keep(link_snapshot)`` is true."""
    db, n = clients.firestore(), 0
    for snap in docs:
        if keep is not None and keep(snap):
            continue
        n += db.recursive_delete(snap.reference)  # the link and its access log
    return n


# --------------------------------------------------------------------------------------------- tombstones

ERASURES = "erasures"  # tenants/{t}/erasures/{camera_id}
DELETED_TENANTS = "deleted_tenants"  # deleted_tenants/{t}, top level: the tenant's deletion cannot take it
# How long an erasure tombstone is kept after the erase (a tenant's deletion tombstone is kept for good, see
# deleted_tenant_ref). Ingest drops any event whose end_time is older than
# VIGINT_EVENT_MAX_AGE_SECONDS (default 7 days) as stale, whatever the tombstones say; so once the tombstone is
# that old, every message of an event that started before the erase is refused by that age check alone: a
# replayed message carries its signed, unchanged times, and an edge that kept a message in its spool longer
# sends it too late to be taken. The margin (1 day) covers an event's own length (its end_time is after the
# start_time the tombstone compares, by at most events.max_length_s, 60 s by default) and clock skew
# (VIGINT_EVENT_MAX_FUTURE_SECONDS). The Firestore TTL policy on expire_at removes the tombstone afterwards
# (terraform/firestore.tf).
TOMBSTONE_MARGIN = dt.timedelta(days=1)


def tombstone_keep() -> dt.timedelta:
    """How long an erasure tombstone is kept: the event max age plus ``TOMBSTONE_MARGIN``."""
    return dt.timedelta(seconds=config.settings().event_max_age_seconds) + TOMBSTONE_MARGIN


def erasure_ref(tenant_id: str, camera_id: str):
    """``tenants/{t}/erasures/{camera_id}``: ``{camera_id, erased_before, erased_at, expire_at}``."""
    return pipeline.tenant_ref(tenant_id).collection(ERASURES).document(camera_id)


def deleted_tenant_ref(tenant_id: str):
    """``deleted_tenants/{t}``: ``{tenant_id, deleted_at, key_versions: {device_id: int}, pending_held}``.

    Kept for good (no ``expire_at``): a device secret is derived from tenant, device and key version alone
    (``vigint.device_keys``), so the recorded key versions must outlive any re-creation of the tenant, however
    late, or the old boxes' secrets would work again. It is one small document per deleted tenant."""
    return clients.firestore().collection(DELETED_TENANTS).document(tenant_id)


def first_key_version(tenant_id: str, device_id: str) -> int:
    """The key version a device created now starts at: 1, or one above the version a device of the same id had
    when its tenant was deleted (``deleted_tenants/{t}``), so a secret of the old device never works again
    (secrets are derived from tenant, device and key version alone, ``vigint.device_keys``)."""
    snap = deleted_tenant_ref(tenant_id).get()
    if not snap.exists:
        return 1
    try:
        return int(((snap.to_dict() or {}).get("key_versions") or {}).get(device_id) or 0) + 1
    except (TypeError, ValueError):
        return 1


def delete_event(tenant_id: str, event_id: str, event: Mapping[str, Any] | None = None) -> dict:
    """Deletes one event: its GCS objects, links (+ access logs), deliveries and the document.

    Objects go by the event's prefix (``tenants/{t}/devices/{d}/events/{e}/``: ``clip.mp4``,
    ``snapshot.jpg`` and a schema version 2 event's ``segments/*.ts`` and ``snapshots/*.jpg``); documents by
    ``recursive_delete`` of the event document, which takes every subcollection with it (``deliveries``,
    and version 2's ``messages`` and ``segments``).

    An event under legal hold (``held``, ``vigint.legal_hold``) is not deleted: counted as ``held_kept``.

    Returns:
        ``{"events", "objects", "links", "documents"}`` counts, and ``held_kept`` (1 for a held event).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed (safe to call again).
    """
    ref = pipeline.event_ref(tenant_id, event_id)
    if event is None:
        snap = ref.get()
        event = snap.to_dict() if snap.exists else {}
    if event.get("held"):
        return {"events": 0, "objects": 0, "links": 0, "documents": 0, "held_kept": 1}
    objects = 0
    device_id = event.get("device_id")
    if device_id:
        objects = _delete_objects(event_prefix(tenant_id, device_id, event_id))
    link_docs = (clients.firestore().collection("links").where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
                 .where(filter=fs.FieldFilter("event_id", "==", event_id)).stream())
    links = _delete_links(link_docs)
    documents = clients.firestore().recursive_delete(ref)
    return {"events": 1 if event else 0, "objects": objects, "links": links, "documents": documents}


def _add(total: dict, part: dict) -> dict:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v
    return total


def apply_retention(tenant_id: str, tenant: Mapping[str, Any], now: dt.datetime) -> dict:
    """Deletes what is older than the tenant's retention, except events under legal hold (with their links
    and objects). Returns counts (see ``delete_event``; ``held_kept``: old events kept for a hold)."""
    days = pipeline.retention_days(tenant)
    cutoff = now - dt.timedelta(days=days)
    counts: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0, "commands": 0, "held_kept": 0}
    old = (pipeline.tenant_ref(tenant_id).collection("events")
           .where(filter=fs.FieldFilter("end_time", "<", cutoff)).stream())
    for snap in old:
        _add(counts, delete_event(tenant_id, snap.id, snap.to_dict()))
    # Only the tenant's links created before the cutoff are read (composite index tenant_id + created_at,
    # terraform/firestore.tf), so a run costs reads in proportion to what it deletes.
    stale_links = list(clients.firestore().collection("links")
                       .where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
                       .where(filter=fs.FieldFilter("created_at", "<", cutoff)).stream())
    held: dict[str, bool] = {}

    def link_of_held_event(link) -> bool:
        event_id = str((link.to_dict() or {}).get("event_id") or "")
        if event_id and event_id not in held:
            ev = pipeline.event_ref(tenant_id, event_id).get()
            held[event_id] = bool(ev.exists and (ev.to_dict() or {}).get("held"))
        return held.get(event_id, False)

    counts["links"] += _delete_links(stale_links, keep=link_of_held_event)
    for device in pipeline.tenant_ref(tenant_id).collection("devices").list_documents():
        for cmd in device.collection("commands").where(filter=fs.FieldFilter("created_at", "<", cutoff)).stream():
            cmd.reference.delete()
            counts["commands"] += 1
    known: dict[str, bool] = {}

    def event_kept(name: str) -> bool:  # tenants/{t}/devices/{d}/events/{e}/...: keep objects of kept events
        parts = name.split("/")
        if len(parts) < 6 or parts[4] != "events":
            return False
        if parts[5] not in known:
            known[parts[5]] = pipeline.event_ref(tenant_id, parts[5]).get().exists
        return known[parts[5]]

    counts["objects"] += _delete_objects(f"tenants/{tenant_id}/", older_than=cutoff, keep=event_kept)
    if any(counts.values()):
        log.info("retention: tenant %s (%d days): %s", tenant_id, days, counts)
    return counts


def _stale_event_id(device_id: str, last: dt.datetime | None) -> str:
    digest = hashlib.sha256(f"{device_id}:{last.isoformat() if last else '-'}".encode()).hexdigest()
    return f"evt_stale_{digest[:26]}"


def check_stale_devices(tenant_id: str, now: dt.datetime) -> list[str]:
    """Raises one ``camera_health`` event per silent spell of each stale active device of the tenant.

    Devices that never sent a heartbeat are skipped (not installed yet).

    Returns:
        The event ids created now.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore/Pub/Sub failed (a later run retries).
    """
    s = config.settings()
    created: list[str] = []
    tenant_snap = pipeline.tenant_ref(tenant_id).get()
    tenant = tenant_snap.to_dict() or {}
    for dev in pipeline.tenant_ref(tenant_id).collection("devices").stream():
        d = dev.to_dict() or {}
        last = pipeline.as_utc(d.get("last_heartbeat_at"))
        if d.get("status") != "active" or last is None:
            continue
        silent = (now - last).total_seconds()
        if silent < pipeline.heartbeat_stale_after_s(d):
            continue
        event_id = _stale_event_id(dev.id, last)
        ref = pipeline.event_ref(tenant_id, event_id)
        doc = {
            "schema_version": 1, "event_id": event_id, "tenant_id": tenant_id, "device_id": dev.id,
            "camera_id": dev.id, "kind": "camera_health", "severity": "alert", "labels": ["device_offline"],
            "start_time": last, "end_time": now, "top_score": 0.0, "max_count": {}, "detections": [],
            "zones": [], "clip": None, "snapshot": None, "ingested_at": fs.SERVER_TIMESTAMP,
            "status": "ingested", "source": "housekeeping", "silent_seconds": int(silent),
            "published": {"ingested": False},
            "expire_at": now + dt.timedelta(days=pipeline.retention_days(tenant)),
        }
        try:
            ref.create(doc)
            created.append(event_id)
            log.warning("housekeeping: device %s/%s silent for %d s; health event %s", tenant_id, dev.id,
                        int(silent), event_id)
        except gexc.AlreadyExists:
            pass
        pipeline.publish_once(ref, "published.ingested", s.ingested_topic, tenant_id, event_id)
    return created


def run_housekeeping(now: dt.datetime | None = None) -> dict:
    """Retention and stale-device checks over every tenant; Cloud Storage holds of held events brought up to
    date (``vigint.legal_hold.sync_object_holds``); deleted tenants that kept held evidence deleted again.

    Returns:
        ``{"tenants": n, "deleted": {counts}, "held_kept": n (expired events kept for a legal hold),
        "stale_device_events": [ids]}``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    from vigint import legal_hold

    total: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0, "commands": 0}
    stale: list[str] = []
    n, held_kept = 0, 0
    for tenant in clients.firestore().collection("tenants").stream():
        n += 1
        counts = apply_retention(tenant.id, tenant.to_dict() or {}, now)
        held_kept += counts.pop("held_kept", 0)
        _add(total, counts)
        legal_hold.sync_object_holds(tenant.id)
        stale.extend(check_stale_devices(tenant.id, now))
    # Deleted tenants that kept held evidence: what was released since is deleted now.
    pending = (clients.firestore().collection(DELETED_TENANTS)
               .where(filter=fs.FieldFilter("pending_held", ">", 0)).stream())
    for snap in pending:
        if pipeline.tenant_ref(snap.id).get().exists:
            # Created again since: what the deletion kept now lives under that tenant and its retention (and
            # this must never delete the new tenant).
            snap.reference.update({"pending_held": 0})
            continue
        part = delete_tenant(snap.id, now=now)
        held_kept += part.pop("held_kept", 0)
        _add(total, part)
    return {"tenants": n, "deleted": total, "held_kept": held_kept, "stale_device_events": stale}


def delete_camera(tenant_id: str, camera_id: str, now: dt.datetime | None = None) -> dict:
    """Deletes everything of one camera: its events (documents, deliveries, links, GCS objects), its
    cooldown records; events under legal hold are kept (``held_kept``).

    First writes the tombstone ``tenants/{t}/erasures/{camera_id}`` (``erased_before`` = ``now``, kept
    ``tombstone_keep()``), so ingest refuses every message of an event of this camera that started at or
    before the erase, also while the deletion runs; events of the camera that start later are stored as usual.
    The events are listed again after the deletion (until a pass deletes nothing): an event whose message was
    being ingested while the tombstone was written is not left behind.

    Args:
        now: the erase time (UTC); default the clock.

    Returns:
        Counts (see ``delete_event``) with ``held_kept``.

    Raises:
        ValueError: ``tenant_id``/``camera_id`` are not slugs.
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed (safe to call again).
    """
    import re

    if not (re.match(SLUG_PATTERN, tenant_id or "") and re.match(SLUG_PATTERN, camera_id or "")):
        raise ValueError("tenant_id and camera_id must be slugs")
    now = now or dt.datetime.now(dt.timezone.utc)
    erasure_ref(tenant_id, camera_id).set({"camera_id": camera_id, "erased_before": now, "erased_at": now,
                                           "expire_at": now + tombstone_keep()})
    counts: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0, "held_kept": 0}
    for _ in range(3):
        events = (pipeline.tenant_ref(tenant_id).collection("events")
                  .where(filter=fs.FieldFilter("camera_id", "==", camera_id)).stream())
        deleted, held = 0, 0
        for snap in events:
            part = delete_event(tenant_id, snap.id, snap.to_dict())
            deleted += part["events"]
            held += part.get("held_kept", 0)
            _add(counts, {k: v for k, v in part.items() if k != "held_kept"})
        counts["held_kept"] = held
        if not deleted:
            break
    for key in (camera_id, f"health:{camera_id}"):
        ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(key)
        if ref.get().exists:
            ref.delete()
            counts["documents"] += 1
    log.info("retention: deleted camera %s/%s: %s", tenant_id, camera_id, counts)
    return counts


# What a tenant's deletion keeps while some of its events are held: the hold records (to release them) and
# the audit trail (who placed and released them).
KEPT_WHILE_HELD = ("holds", "audit", "camera_holds")


def delete_tenant(tenant_id: str, now: dt.datetime | None = None) -> dict:
    """Deletes everything of one tenant: every document under ``tenants/{t}`` (devices, events, deliveries,
    usage, cooldowns...), its links and their access logs, its API keys and enrollment codes, and every
    object under ``tenants/{t}/``; except its events under legal hold (with their documents, links and
    objects) and, while any is held, its hold records and audit trail.

    First writes the tombstone ``deleted_tenants/{t}`` (``deleted_at`` = ``now``, ``key_versions`` of its
    devices, kept for good: ``deleted_tenant_ref``), which ingest and edge_api check. While some evidence is
    held, ``pending_held`` > 0 and housekeeping calls this again on each run. Calling it again is safe and
    finishes what a release has freed.

    Returns:
        ``{"objects", "links", "documents", "held_kept"}`` counts.

    Raises:
        ValueError: ``tenant_id`` is not a slug.
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed (safe to call again).
    """
    import re

    if not re.match(SLUG_PATTERN, tenant_id or ""):
        raise ValueError("tenant_id must be a slug")
    now = now or dt.datetime.now(dt.timezone.utc)
    db = clients.firestore()
    tenant_ref = pipeline.tenant_ref(tenant_id)
    tomb = deleted_tenant_ref(tenant_id)
    old = tomb.get()
    versions = dict(((old.to_dict() or {}).get("key_versions") or {}) if old.exists else {})
    for dev in tenant_ref.collection("devices").stream():
        try:
            versions[dev.id] = max(int(versions.get(dev.id) or 0), int((dev.to_dict() or {}).get("key_version") or 1))
        except (TypeError, ValueError):
            versions[dev.id] = max(int(versions.get(dev.id) or 0), 1)
    tomb.set({"tenant_id": tenant_id, "deleted_at": now, "key_versions": versions, "pending_held": 0})
    # Held events (and the ids whose objects and links stay).
    held_ids = {snap.id: (snap.to_dict() or {}).get("device_id")
                for snap in tenant_ref.collection("events").where(filter=fs.FieldFilter("held", "==", True)).stream()}
    held_prefixes = tuple(event_prefix(tenant_id, d, e) for e, d in held_ids.items() if d)
    links = _delete_links(db.collection("links").where(filter=fs.FieldFilter("tenant_id", "==", tenant_id)).stream(),
                          keep=lambda link: (link.to_dict() or {}).get("event_id") in held_ids)
    objects = _delete_objects(f"tenants/{tenant_id}/", keep=lambda name: name.startswith(held_prefixes))
    documents = 0
    for coll in tenant_ref.collections():
        if coll.id == "events":
            for ev in coll.list_documents():
                if ev.id not in held_ids:
                    documents += db.recursive_delete(ev)
        elif not (held_ids and coll.id in KEPT_WHILE_HELD):
            documents += db.recursive_delete(coll)
    # Top-level records that point at the tenant: its API keys (so none authenticates afterwards) and
    # enrollment codes (so none can recreate a device).
    from vigint import api_keys, provisioning

    for collection in (api_keys.COLLECTION, provisioning.ENROLLMENT_COLLECTION):
        for snap in db.collection(collection).where(filter=fs.FieldFilter("tenant_id", "==", tenant_id)).stream():
            snap.reference.delete()
            documents += 1
    if tenant_ref.get().exists:
        tenant_ref.delete()
        documents += 1
    tomb.update({"pending_held": len(held_ids)})
    counts = {"objects": objects, "links": links, "documents": documents, "held_kept": len(held_ids)}
    log.info("retention: deleted tenant %s: %s", tenant_id, counts)
    return counts


def handle_http(*, method: str, now: dt.datetime | None = None) -> tuple[str, int, dict]:
    """The ``retention`` HTTP function: POST (or GET) runs ``run_housekeeping`` and answers its counts."""
    if method not in ("POST", "GET"):
        return json.dumps({"error": "method not allowed"}), 405, {"Allow": "GET, POST",
                                                                   "Content-Type": "application/json"}
    result = run_housekeeping(now)
    return json.dumps(result), 200, {"Content-Type": "application/json"}
