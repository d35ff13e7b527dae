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
    return n


def _delete_links(docs) -> int:
    db, n = clients.firestore(), 0
    for snap in docs:
        n += db.recursive_delete(snap.reference)  # the link and its access log
    return n


def delete_event(tenant_id: str, event_id: str, event: Mapping[str, Any] | None = None) -> dict:
    """Deletes one event: its GCS objects, links (+ access logs), deliveries and the document.

    Objects go by the event's prefix (``tenants/{t}/devices/{d}/events/{e}/``: ``clip.mp4``,
    ``snapshot.jpg`` and a schema version 2 event's ``segments/*.ts`` and ``snapshots/*.jpg``); documents by
    ``recursive_delete`` of the event document, which takes every subcollection with it (``deliveries``,
    and version 2's ``messages`` and ``segments``).

    Returns:
        ``{"events", "objects", "links", "documents"}`` counts.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed (safe to call again).
    """
    ref = pipeline.event_ref(tenant_id, event_id)
    if event is None:
        snap = ref.get()
        event = snap.to_dict() if snap.exists else {}
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
    """Deletes what is older than the tenant's retention. Returns counts (see ``delete_event``)."""
    days = pipeline.retention_days(tenant)
    cutoff = now - dt.timedelta(days=days)
    counts: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0, "commands": 0}
    old = (pipeline.tenant_ref(tenant_id).collection("events")
           .where(filter=fs.FieldFilter("end_time", "<", cutoff)).stream())
    for snap in old:
        _add(counts, delete_event(tenant_id, snap.id, snap.to_dict()))
    # Only the tenant's links created before the cutoff are read (composite index tenant_id + created_at,
    # terraform/firestore.tf), so a run costs reads in proportion to what it deletes.
    stale_links = list(clients.firestore().collection("links")
                       .where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
                       .where(filter=fs.FieldFilter("created_at", "<", cutoff)).stream())
    counts["links"] += _delete_links(stale_links)
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
        interval = int(d.get("heartbeat_interval_seconds") or s.heartbeat_interval_seconds)
        silent = (now - last).total_seconds()
        if silent < s.stale_heartbeat_intervals * interval:
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
    """Retention and stale-device checks over every tenant.

    Returns:
        ``{"tenants": n, "deleted": {counts}, "stale_device_events": [ids]}``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    total: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0, "commands": 0}
    stale: list[str] = []
    n = 0
    for tenant in clients.firestore().collection("tenants").stream():
        n += 1
        _add(total, apply_retention(tenant.id, tenant.to_dict() or {}, now))
        stale.extend(check_stale_devices(tenant.id, now))
    return {"tenants": n, "deleted": total, "stale_device_events": stale}


def delete_camera(tenant_id: str, camera_id: str) -> dict:
    """Deletes everything of one camera: its events (documents, deliveries, links, GCS objects), its
    cooldown records.

    Returns:
        Counts (see ``delete_event``).

    Raises:
        ValueError: ``tenant_id``/``camera_id`` are not slugs.
    """
    import re

    if not (re.match(SLUG_PATTERN, tenant_id or "") and re.match(SLUG_PATTERN, camera_id or "")):
        raise ValueError("tenant_id and camera_id must be slugs")
    counts: dict = {"events": 0, "objects": 0, "links": 0, "documents": 0}
    events = (pipeline.tenant_ref(tenant_id).collection("events")
              .where(filter=fs.FieldFilter("camera_id", "==", camera_id)).stream())
    for snap in events:
        _add(counts, delete_event(tenant_id, snap.id, snap.to_dict()))
    for key in (camera_id, f"health:{camera_id}"):
        ref = pipeline.tenant_ref(tenant_id).collection("cooldowns").document(key)
        if ref.get().exists:
            ref.delete()
            counts["documents"] += 1
    log.info("retention: deleted camera %s/%s: %s", tenant_id, camera_id, counts)
    return counts


def delete_tenant(tenant_id: str) -> dict:
    """Deletes everything of one tenant: every document under ``tenants/{t}`` (devices, events, deliveries,
    usage, cooldowns...), its links and their access logs, its API keys and enrollment codes, and every
    object under ``tenants/{t}/``.

    Returns:
        ``{"objects", "links", "documents"}`` counts.

    Raises:
        ValueError: ``tenant_id`` is not a slug.
    """
    import re

    if not re.match(SLUG_PATTERN, tenant_id or ""):
        raise ValueError("tenant_id must be a slug")
    db = clients.firestore()
    links = _delete_links(db.collection("links").where(filter=fs.FieldFilter("tenant_id", "==", tenant_id)).stream())
    objects = _delete_objects(f"tenants/{tenant_id}/")
    documents = db.recursive_delete(pipeline.tenant_ref(tenant_id))
    # Top-level records that point at the tenant: its API keys (so none authenticates afterwards) and
    # enrollment codes (so none can recreate a device).
    from vigint import api_keys, provisioning

    for collection in (api_keys.COLLECTION, provisioning.ENROLLMENT_COLLECTION):
        for snap in db.collection(collection).where(filter=fs.FieldFilter("tenant_id", "==", tenant_id)).stream():
            snap.reference.delete()
            documents += 1
    tenant_ref = pipeline.tenant_ref(tenant_id)
    if tenant_ref.get().exists:  # recursive_delete covers it; be sure
        tenant_ref.delete()
        documents += 1
    counts = {"objects": objects, "links": links, "documents": documents}
    log.info("retention: deleted tenant %s: %s", tenant_id, counts)
    return counts


def handle_http(*, method: str, now: dt.datetime | None = None) -> tuple[str, int, dict]:
    """The ``retention`` HTTP function: POST (or GET) runs ``run_housekeeping`` and answers its counts."""
    if method not in ("POST", "GET"):
        return json.dumps({"error": "method not allowed"}), 405, {"Allow": "GET, POST",
                                                                   "Content-Type": "application/json"}
    result = run_housekeeping(now)
    return json.dumps(result), 200, {"Content-Type": "application/json"}
