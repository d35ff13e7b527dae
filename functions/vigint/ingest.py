"""``ingest``: edge event message (topic ``edge-events``) -> ``tenants/{t}/events/{e}`` in Firestore.

Checks, in order: attributes well formed; the device exists under the tenant named in the attributes and
is active; ``key_version`` is the device's current one; the signature holds; the data is a valid
``EdgeEvent`` whose tenant/device/event ids equal the attributes; the event is not stale (``end_time`` more
than ``VIGINT_EVENT_MAX_AGE_SECONDS`` ago, default 7 days) nor from the future (``start_time``/``end_time``
beyond ``VIGINT_EVENT_MAX_FUTURE_SECONDS`` of clock skew, default 300 s); its camera was not erased nor its
tenant deleted after it started (tombstones, ``tombstones_and_holds``: ``erased``, ``tenant_deleted``); it is
not a replay. An event inside a camera's legal-hold range is stored held (``vigint.legal_hold``). Messages failing
any check can never succeed: they are logged with a reason, counted in ``stats/ingest_drops`` and
acknowledged (the function returns normally). Transient errors (Firestore, Pub/Sub) raise so Pub/Sub
redelivers, and after ``max_delivery_attempts`` the subscription's dead-letter policy moves the message to
``edge-events-dead``.

Before storing, the objects the message brings are compared with what the bucket holds, from their metadata
alone (``check_objects``: one ``objects.get`` each, concurrently, while the tenant is read; size and, when the
device claimed it, the MD5): a missing or different object is stored and flagged on the event
(``integrity``, docs/contracts.md "Evidence integrity"), never silently accepted; a Cloud Storage error
raises (Pub/Sub redelivers).

The event document is created with ``create()`` in one batch with the tenant's usage counters
(``vigint.usage``); ``expire_at`` (end time + the tenant's retention) lets a Firestore TTL policy remove it
should the scheduled retention miss it. A second message for a stored event is:

* a redelivery (same data, same Pub/Sub message id, or no id known): only makes sure the follow-on
  ``events-ingested`` message went out (flag ``published.ingested``) -> ``"duplicate"``;
* a replay (same signed data published again as a new message): dropped, reason ``replayed``;
* different data under the same event id: dropped, reason ``event_id_conflict``.

Schema version 2 (attribute ``schema_version`` ``"2"``, docs/contracts.md "Event lifecycle"): a
``detection`` event arrives as ``start`` / updates / ``end`` with the same event id, each a whole
snapshot of the event so far (``vigint.schema.LifecycleMessage``), in any order, twice or with gaps. After
the same checks, ``ingest_lifecycle`` applies each ``(event_id, seq)`` once: in one optimistic read-modify-write it creates
``messages/{seq:06d}`` (the same seq with other data: dropped as ``event_id_conflict``; with the same data: a
duplicate, which only makes sure its follow-on went out), creates the message's new
``segments/{index:05d}`` documents, and merges the state into the event document (``merge_state``: the
highest seq wins for the cumulative fields, ``ended`` is sticky). In the same write it records the detections
verdict of the new state (``vigint.verdicts``), and a message that creates the event, changes its labels or
severity, or ends it is published on ``events-analyzed`` (``{"verdict": "detections"}``, straight to alert)
before ``events-ingested`` (to analyze, for Gemini). A version 1 message is stored as a whole, ended event
(``ended: true``, ``phase: "end"``, no segments).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor as _Pool

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs
from pydantic import ValidationError

from vigint import bodies, clients, config, device_keys, pipeline, storage, usage, verdicts
from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, EdgeEvent, LifecycleMessage, matches

log = logging.getLogger(__name__)

STAGE = "ingest"
PUBLISHED_FLAG = "published.ingested"


def handle_edge_event(*, data: bytes, attributes: Mapping[str, str], message_id: str | None = None,
                      now: dt.datetime | None = None) -> str:
    """Ingests one edge event message.

    Args:
        data: the message data (UTF-8 JSON, ``EdgeEvent``).
        attributes: the message attributes (``tenant_id``, ``device_id``, ``event_id``,
            ``schema_version``, ``key_version``, ``signature``).
        message_id: Pub/Sub message id (tells a redelivery from a replay).
        now: current time (UTC), for tests; default the clock.

    Returns:
        What happened: ``"created"``, ``"duplicate"`` or ``"dropped:<reason>"``; for schema version 2 also
        ``"applied"`` (a newer state merged into a stored event) and ``"stored"`` (an older seq: its
        segments and message kept, the state not changed). Reasons: ``bad_attributes``,
        ``unsupported_schema_version``, ``unknown_device``, ``device_not_active``, ``stale_key_version``,
        ``bad_signature``, ``too_deep`` (data nested deeper than 32 levels), ``invalid_json``,
        ``invalid_body``, ``attributes_mismatch``, ``stale_event``, ``future_event``, ``erased``,
        ``tenant_deleted``, ``replayed``, ``event_id_conflict``).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: a transient Firestore/Pub/Sub failure.
        vigint.pipeline.InProgress: a concurrent delivery of the same message is publishing the follow-on.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    # Pub/Sub attributes are strings; anything else (a hand-made push body) counts as missing.
    attrs = {k: v for k, v in dict(attributes or {}).items() if isinstance(v, str)}
    tenant_id, device_id, event_id = attrs.get("tenant_id", ""), attrs.get("device_id", ""), attrs.get("event_id", "")
    ctx = {"tenant": tenant_id[:63], "device": device_id[:63], "event": event_id[:64], "message": message_id or ""}

    def drop(reason: str) -> str:
        pipeline.count_drop(STAGE, reason, **ctx)
        return f"dropped:{reason}"

    # The patterns also keep out the ids Firestore reserves (``__.*__``): such an id would raise on every
    # delivery and end in the dead-letter topic instead of being dropped here.
    if not (matches(SLUG_PATTERN, tenant_id) and matches(SLUG_PATTERN, device_id)
            and matches(EVENT_ID_PATTERN, event_id)):
        return drop("bad_attributes")
    version = attrs.get("schema_version")
    if version not in ("1", "2"):
        return drop("unsupported_schema_version")
    try:
        key_version = int(attrs.get("key_version", ""))
        seq_attr = int(attrs["seq"]) if version == "2" else None
    except (ValueError, KeyError):
        return drop("bad_attributes")
    if version == "2" and (attrs.get("phase") not in ("start", "update", "end") or not 0 <= seq_attr <= 1_000_000
                           or attrs["seq"] != str(seq_attr)):
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

    if bodies.nesting_depth(data, bodies.DEFAULT_MAX_DEPTH) > bodies.DEFAULT_MAX_DEPTH:
        return drop("too_deep")  # a valid message nests 4 levels at most; this one never reaches a JSON parser
    try:
        event = EdgeEvent.parse(data) if version == "1" else LifecycleMessage.parse(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        if first["type"] == "json_invalid":
            return drop("invalid_json")
        ctx["error"] = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"[:300]
        return drop("invalid_body")
    if (event.tenant_id, event.device_id, event.event_id) != (tenant_id, device_id, event_id):
        return drop("attributes_mismatch")
    if version == "2" and (event.phase, event.seq) != (attrs["phase"], seq_attr):
        return drop("attributes_mismatch")

    s = config.settings()
    age = (now - event.end_time).total_seconds()
    if age > s.event_max_age_seconds:
        ctx["age_s"] = str(int(age))
        return drop("stale_event")
    ahead = (max(event.start_time, event.end_time) - now).total_seconds()
    if ahead > s.event_max_future_seconds:
        ctx["ahead_s"] = str(int(ahead))
        return drop("future_event")

    digest = hashlib.sha256(data).hexdigest()
    ref = pipeline.event_ref(tenant_id, event_id)
    # The stored objects' metadata is read while the tombstones, holds and tenant are (one GET per object,
    # side by side): the message's path to alert waits for the slower of the two, not for both.
    with _Pool(max_workers=1) as pool:
        checking = pool.submit(check_objects, claimed_objects(event))
        tenant_doc, gone, hold_ids = tombstones_and_holds(tenant_id, event)
        problems = checking.result()  # a Cloud Storage failure raises here: transient, Pub/Sub redelivers
    if gone == "tenant_deleted" or (gone == "erased" and not hold_ids and not isinstance(event, LifecycleMessage)):
        return drop(gone)
    if problems:
        log.warning("ingest: %s/%s: %d stored object(s) differ from what the message claims: %s", tenant_id,
                    event_id, len(problems), ", ".join(f"{p['object']} ({p['problem']})" for p in problems))
    if isinstance(event, LifecycleMessage):
        return ingest_lifecycle(event, digest=digest, message_id=message_id, tenant=tenant_doc, now=now, drop=drop,
                                hold_ids=hold_ids, erased=gone == "erased", problems=problems)
    doc = event.model_dump()
    doc.update({"ingested_at": fs.SERVER_TIMESTAMP, "status": "ingested", "message_id": message_id,
                "message_sha256": digest, "published": {"ingested": False},
                "expire_at": event.end_time + dt.timedelta(days=pipeline.retention_days(tenant_doc)),
                # A version 1 message is a whole event: stored as the end of an event without segments.
                "schema_version": 1, "phase": "end", "ended": True, "chain_root": event_id,
                "timeline": {"ingested": now, "end": event.end_time},
                "integrity": merge_integrity({}, problems, len(claimed_objects(event)))})
    if hold_ids:  # inside a held camera range: held from its first write, no TTL (vigint.legal_hold)
        doc.update({"held": True, "hold_ids": hold_ids, "hold_objects_pending": True,
                    "held_expire_at": doc.pop("expire_at")})
    batch = clients.firestore().batch()
    batch.create(ref, doc)
    usage.add(tenant_id, now=now, batch=batch, events=1, clip_bytes=event.clip.bytes if event.clip else 0)
    try:
        batch.commit()
        outcome = "created"
        log.info("ingest: event %s/%s created (camera %s, kind %s, labels %s)", tenant_id, event_id,
                 event.camera_id, event.kind, ",".join(event.labels))
    except gexc.AlreadyExists:
        existing = ref.get().to_dict() or {}
        if existing.get("device_id") != device_id or existing.get("message_sha256", digest) != digest:
            return drop("event_id_conflict")
        first_id = existing.get("message_id")
        if message_id and first_id and message_id != first_id:
            ctx["first_message"] = str(first_id)
            return drop("replayed")
        outcome = "duplicate"
        log.info("ingest: event %s/%s already stored (redelivery)", tenant_id, event_id)
    pipeline.publish_once(ref, PUBLISHED_FLAG, s.ingested_topic, tenant_id, event_id)
    return outcome


def tombstones_and_holds(tenant_id: str, event) -> tuple[dict, str | None, list[str]]:
    """The tenant document, whether the event's camera was erased or its tenant deleted after the event
    started, and the camera holds covering it: one ``get_all`` of ``tenants/{t}``, ``deleted_tenants/{t}``,
    ``tenants/{t}/erasures/{camera_id}`` and ``tenants/{t}/camera_holds/{camera_id}`` (one round trip, the
    one that read the tenant document alone before; ingest is on the alert's path).

    Args:
        event: the verified ``EdgeEvent`` or ``LifecycleMessage``.

    Returns:
        ``(tenant document or {}, None | "erased" | "tenant_deleted", covering hold ids)``: ``erased`` when
        ``start_time`` (and ``first_seen`` of a version 2 message) is at or before the camera's
        ``erased_before``, ``tenant_deleted`` likewise for the tenant's ``deleted_at`` (``vigint.retention``).
    """
    from vigint import legal_hold, retention

    camera_id = str(event.camera_id)
    refs = {"tenant": pipeline.tenant_ref(tenant_id), "deleted": retention.deleted_tenant_ref(tenant_id),
            "erased": retention.erasure_ref(tenant_id, camera_id),
            "holds": legal_hold.camera_holds_ref(tenant_id, camera_id)}
    by_path = {snap.reference.path: snap for snap in clients.firestore().get_all(list(refs.values()))}
    docs = {k: (by_path[r.path].to_dict() or {}) if by_path.get(r.path) is not None and by_path[r.path].exists else None
            for k, r in refs.items()}
    began = min(t for t in (event.start_time, getattr(event, "first_seen", None)) if t is not None)
    gone = None
    deleted_at = pipeline.as_utc((docs["deleted"] or {}).get("deleted_at"))
    erased_before = pipeline.as_utc((docs["erased"] or {}).get("erased_before"))
    if deleted_at is not None and began <= deleted_at:
        gone = "tenant_deleted"
    elif erased_before is not None and began <= erased_before:
        gone = "erased"
    holds = legal_hold.covering_holds((docs["holds"] or {}).get("ranges"), event.start_time, event.end_time)
    return docs["tenant"] or {}, gone, holds


# ------------------------------------------------------------------------------------------ stored objects

MAX_INTEGRITY_OBJECTS = 50  # problems kept on the event document (the count goes on): bounds its size


def claimed_objects(event: EdgeEvent | LifecycleMessage) -> list[dict]:
    """The objects a message says it brought, as ``{"object", "bytes", "sha256", "md5"}`` (``md5`` None when the
    device did not declare it).

    A version 1 event: its clip and snapshot. A version 2 message: its own snapshot (``snapshots/{seq:05d}.jpg``;
    a later message repeating an earlier snapshot does not check it again), its new segments and its clip.
    """
    refs = []
    if isinstance(event, LifecycleMessage):
        if event.snapshot is not None and event.snapshot.object.endswith(f"/snapshots/{event.seq:05d}.jpg"):
            refs.append(event.snapshot)
        refs += list(event.segments)
    elif event.snapshot is not None:
        refs.append(event.snapshot)
    if event.clip is not None:
        refs.append(event.clip)
    return [{"object": r.object, "bytes": r.bytes, "sha256": r.sha256, "md5": r.md5} for r in refs]


def check_objects(claims: list[dict]) -> list[dict]:
    """Compares each claimed object with what Cloud Storage stores, from its metadata alone (one
    ``objects.get`` per object, concurrently: ``storage.object_metadata``; no bytes downloaded).

    Args:
        claims: ``claimed_objects(...)``.

    Returns:
        One problem per object that is missing or differs: ``{"object", "problem": "missing"|"size"|"md5",
        "claimed_bytes", "stored_bytes", "claimed_md5", "stored_md5"}`` (stored ones None when missing); [] if
        every object matches. Without a claimed ``md5`` only the size is compared.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Cloud Storage failed (transient: Pub/Sub redelivers).
    """
    if not claims:
        return []
    stored = storage.object_metadata(c["object"] for c in claims)
    problems = []
    for c in claims:
        info = stored.get(c["object"])
        problem = ("missing" if info is None else "size" if info.size != c["bytes"]
                   else "md5" if c["md5"] is not None and info.md5 != c["md5"] else None)
        if problem:
            problems.append({"object": c["object"], "problem": problem, "claimed_bytes": c["bytes"],
                             "stored_bytes": info.size if info else None, "claimed_md5": c["md5"],
                             "stored_md5": info.md5 if info else None})
    return problems


def merge_integrity(existing: Mapping, problems: list[dict], checked: int) -> dict:
    """The event's ``integrity`` field after one more message's check.

    Returns:
        ``{"status": "ok"|"mismatch", "checked": int, "mismatches": int, "objects": [problem, ...]}``:
        ``checked`` counts the objects compared over the event's messages, ``mismatches`` the problems found
        (``objects`` keeps the first ``MAX_INTEGRITY_OBJECTS``, one per object). ``mismatch`` is sticky.
    """
    objects = list(existing.get("objects") or [])
    known = {o.get("object") for o in objects}
    new = [p for p in problems if p["object"] not in known]
    objects += new[:max(0, MAX_INTEGRITY_OBJECTS - len(objects))]
    mismatches = int(existing.get("mismatches") or 0) + len(new)
    return {"status": "mismatch" if mismatches else "ok", "checked": int(existing.get("checked") or 0) + checked,
            "mismatches": mismatches, "objects": objects}


# ------------------------------------------------------------------------------------------ schema version 2

MESSAGE_FLAG = "published"  # on messages/{seq:06d}: the follow-on of this message went out
# Fields of the event state a version 2 message carries whole; the highest seq applied wins.
STATE_FIELDS = ("camera_id", "kind", "severity", "labels", "start_time", "end_time", "first_seen",
                "alert_first_seen", "confirmed_at", "alert_confirmed_at", "sent_at", "top_score", "max_count",
                "detections", "zones", "zone_events", "snapshot", "continues")
END_FIELDS = ("clip", "segment_count", "interrupted")


def message_ref(tenant_id: str, event_id: str, seq: int):
    """``tenants/{t}/events/{e}/messages/{seq:06d}``: one applied version 2 message."""
    return pipeline.event_ref(tenant_id, event_id).collection("messages").document(f"{seq:06d}")


def segment_ref(tenant_id: str, event_id: str, index: int):
    """``tenants/{t}/events/{e}/segments/{index:05d}``: one stored HLS segment of the event."""
    return pipeline.event_ref(tenant_id, event_id).collection("segments").document(f"{index:05d}")


def _is_stored_event(doc: Mapping) -> bool:
    """False for no document and for a placeholder that only carries ``continued_by`` (a continuation
    arrived before the event it continues)."""
    return "seq" in doc and "event_id" in doc


def merge_state(existing: Mapping, msg: LifecycleMessage, *, now: dt.datetime) -> tuple[dict, bool, bool]:
    """The changes a version 2 message makes to its event document.

    Args:
        existing: the stored event document ({} or a placeholder if the event is not stored yet).
        msg: the message.
        now: when it was received (UTC): ``timeline.ingested`` of a new event.

    Returns:
        ``(fields, applied, notify)``: ``fields`` maps Firestore field paths to values (for
        ``update``; for a new event, the whole document with dotted timeline paths expanded by the caller);
        ``applied`` is True when the message's state replaced the stored one (a higher seq, or a new event);
        ``notify`` is True when the message created the event, changed its labels or severity, or ended it.
    """
    created = not _is_stored_event(existing)
    old_seq = -1 if created else int(existing.get("seq", -1))
    applied = msg.seq > old_seq
    state = msg.model_dump(include=set(STATE_FIELDS))
    was_ended = bool(existing.get("ended")) and not created
    fields: dict = {}
    if applied:
        if not created and existing.get("severity") == "alert":  # severity never falls
            state["severity"] = "alert"
        for name in ("alert_first_seen", "alert_confirmed_at"):  # once an alert, the alert's times stay
            if state[name] is None and not created and existing.get(name) is not None:
                state[name] = existing[name]
        fields.update(state)
        fields["seq"] = msg.seq
        fields["phase"] = "end" if (was_ended or msg.phase == "end") else msg.phase
        fields["timeline.first_seen"] = state["alert_first_seen"] or state["first_seen"]
        fields["timeline.confirmed"] = state["alert_confirmed_at"] or state["confirmed_at"]
    if msg.phase == "end" and not was_ended:
        fields.update(msg.model_dump(include=set(END_FIELDS)))
        fields["ended"] = True
        fields["phase"] = "end"
        fields["timeline.end"] = msg.end_time
    if msg.seq == 0:
        fields["timeline.start_published"] = msg.sent_at
    if created:
        fields.update({"schema_version": 2, "event_id": msg.event_id, "tenant_id": msg.tenant_id,
                       "device_id": msg.device_id, "status": "ingested", "ingested_at": fs.SERVER_TIMESTAMP,
                       "timeline.ingested": now})
        fields.setdefault("ended", False)
        for name in END_FIELDS:
            fields.setdefault(name, None if name != "interrupted" else False)
    changed = applied and not created and (
        list(existing.get("labels") or []) != list(fields["labels"])
        or existing.get("severity") != fields["severity"])
    notify = created or changed or (msg.phase == "end" and not was_ended)
    return fields, applied, notify


def _expand(fields: Mapping) -> dict:
    """``{"a.b": v}`` -> ``{"a": {"b": v}}`` for a ``set`` (``update`` takes the dotted paths as they are)."""
    out: dict = {}
    for path, value in fields.items():
        cur = out
        *head, last = path.split(".")
        for part in head:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return out


def ingest_lifecycle(msg: LifecycleMessage, *, digest: str, message_id: str | None, tenant: Mapping,
                     now: dt.datetime, drop, hold_ids: list[str] | None = None, erased: bool = False,
                     problems: list[dict] | None = None) -> str:
    """Applies one verified version 2 message (see the module docstring); publishes its follow-on.

    One optimistic read-modify-write (``pipeline.run_optimistic``: no locks) reads the event, the message's
    ``messages/{seq:06d}``, its segments' documents and the
    continued event, then writes them: so concurrent deliveries of the messages of one event end in one event
    document with the right final state. The event document takes one write per message (one per 2-4 s
    segment), within Firestore's sustained limit of about one write per second per document
    (https://cloud.google.com/firestore/docs/best-practices#high_read_write_and_delete_rates); that is why the
    segments and messages have documents of their own.

    ``hold_ids``: camera holds covering the event (``tombstones_and_holds``): the event is held (no
    ``expire_at`` on it or on the documents this message writes). ``erased``: the camera was erased after the
    event started: the message is dropped (``erased``) unless the event is stored and held (the erase kept it).
    ``problems`` (``check_objects`` of the message's own objects) are merged into the event's ``integrity``
    in the same write (``merge_integrity``).

    Returns:
        ``"created"``, ``"applied"``, ``"stored"``, ``"duplicate"``, ``"dropped:event_id_conflict"`` or
        ``"dropped:erased"``.

    Raises:
        vigint.pipeline.InProgress: the write lost to concurrent deliveries every time (redelivered).
        google.api_core.exceptions.GoogleAPICallError: Firestore/Pub/Sub failed (transient).
    """
    s = config.settings()
    tenant_id, event_id, seq = msg.tenant_id, msg.event_id, msg.seq
    ref = pipeline.event_ref(tenant_id, event_id)
    msg_ref = message_ref(tenant_id, event_id, seq)
    seg_refs = {seg.index: segment_ref(tenant_id, event_id, seg.index) for seg in msg.segments}
    prev_ref = pipeline.event_ref(tenant_id, msg.continues) if msg.continues else None
    retention = dt.timedelta(days=pipeline.retention_days(tenant))

    def txn(tx) -> tuple[str, dict]:
        refs = [ref, msg_ref, *seg_refs.values()] + ([prev_ref] if prev_ref is not None else [])
        snaps = {snap.reference.path: snap for snap in tx.get_all(refs)}
        known = snaps[msg_ref.path]
        if known.exists:
            stored = known.to_dict() or {}
            return ("duplicate" if stored.get("message_sha256") == digest else "conflict"), stored
        ev_snap = snaps[ref.path]
        existing = (ev_snap.to_dict() or {}) if ev_snap.exists else {}
        created = not _is_stored_event(existing)
        held_ids = sorted(set(existing.get("hold_ids") or []) | set(hold_ids or []))
        if erased and not (existing.get("held") or hold_ids):
            return "erased", {}
        if not created and (existing.get("device_id") != msg.device_id or existing.get("schema_version") != 2):
            return "conflict", {}
        prev_ref_ok = prev_ref
        prev = (snaps[prev_ref.path].to_dict() or {}) if prev_ref is not None else {}
        if _is_stored_event(prev) and (prev.get("device_id"), prev.get("camera_id")) != (msg.device_id, msg.camera_id):
            log.warning("ingest: %s/%s continues %s of another camera; not chained", tenant_id, event_id, msg.continues)
            prev_ref_ok = None
        fields, applied, notify = merge_state(existing, msg, now=now)
        if applied:  # the detections verdict of the new state, in the same write (no hop, no Gemini)
            merged = {**existing, **{k: v for k, v in fields.items() if "." not in k}}
            fields.update(verdicts.verdict_updates(existing, "detections",
                                                   verdicts.lifecycle_detections_verdict(merged), now))
        fields["expire_at"] = max(msg.end_time, pipeline.as_utc(existing.get("end_time")) or msg.end_time) + retention
        if held_ids:  # under legal hold (vigint.legal_hold): no TTL while held; its new objects get held too
            fields.update({"held": True, "hold_ids": held_ids, "hold_objects_pending": True,
                           "held_expire_at": fields.pop("expire_at")})
            if "expire_at" in existing:  # a stored event held now, or a continuation's placeholder
                fields["expire_at"] = fs.DELETE_FIELD
        ttl = {} if held_ids else {"expire_at": msg.end_time + retention}
        held_ttl = {"held_expire_at": msg.end_time + retention} if held_ids else {}
        fields["integrity"] = merge_integrity({} if created else existing.get("integrity") or {}, problems or [],
                                              len(claimed_objects(msg)))
        fix_ref = None
        if created:
            # The continued event's root; the continued event itself if it is not stored yet.
            fields["chain_root"] = (prev.get("chain_root") or msg.continues) if prev_ref_ok is not None else event_id
            follower = existing.get("continued_by")
            if follower and fields["chain_root"] != event_id:
                fix_ref = pipeline.event_ref(tenant_id, follower)
                if not tx.get(fix_ref).exists:
                    fix_ref = None
        # --- writes (every read is above) ---
        if created:
            tx.set(ref, _expand(fields), merge=True)
            usage.add(tenant_id, now=now, batch=tx, events=1)
        else:
            tx.update(ref, fields)
        if fix_ref is not None:  # its continuation arrived first and took this event for the root
            tx.update(fix_ref, {"chain_root": fields["chain_root"]})
        if msg.phase == "end" and msg.clip is not None and not existing.get("ended"):
            usage.add(tenant_id, now=now, batch=tx, clip_bytes=msg.clip.bytes)
        if prev_ref_ok is not None and prev.get("continued_by") != event_id:
            # A continuation that arrives first leaves a placeholder ({continued_by, expire_at}) that the
            # continued event's own messages fill in; its expire_at is the TTL backstop should they never come.
            mark = {"continued_by": event_id} if prev else {"continued_by": event_id,
                                                             "expire_at": msg.end_time + retention}
            tx.set(prev_ref, mark, merge=True)
        for seg in msg.segments:
            if not snaps[seg_refs[seg.index].path].exists:
                tx.create(seg_refs[seg.index], {**seg.model_dump(exclude={"content_type"}),
                                                "received_at": fs.SERVER_TIMESTAMP, "seq": seq, **ttl, **held_ttl})
        stored = {"phase": msg.phase, "seq": seq, "message_sha256": digest, "message_id": message_id,
                  "received_at": fs.SERVER_TIMESTAMP, MESSAGE_FLAG: False, "notify": notify, "applied": applied,
                  **ttl, **held_ttl}
        tx.create(msg_ref, stored)
        return ("created" if created else "applied" if applied else "stored"), stored

    outcome, stored = pipeline.run_optimistic(txn, what=f"{tenant_id}/{event_id}: message {seq}")
    if outcome == "conflict":
        return drop("event_id_conflict")
    if outcome == "erased":
        return drop("erased")
    log.info("ingest: event %s/%s message %d (%s): %s", tenant_id, event_id, seq, msg.phase, outcome)
    if stored.get("notify") and not stored.get(MESSAGE_FLAG):
        # The detections verdict straight to alert first (the alert's path), then the event to analyze. The
        # first is not flagged: a redelivery publishes it again, and alert is idempotent.
        pipeline.publish_follow_on(s.analyzed_topic, tenant_id, event_id, {"verdict": "detections"})
        pipeline.publish_once(msg_ref, MESSAGE_FLAG, s.ingested_topic, tenant_id, event_id, extra={"seq": seq})
    return outcome
