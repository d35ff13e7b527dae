"""Handlers: event counts over time (``/v1/analytics/counts``) and monthly use (``/v1/usage``).

Usage is read from the counters the functions keep in ``tenants/{t}/usage/{YYYY-MM}`` (``vigint.usage``:
``events``, ``clip_bytes`` written by ingest, ``gemini_tokens`` by analyze, ``emails_sent`` by alert).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from google.cloud import firestore as fs

from vigint import pipeline
from vigint import usage as vusage
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request

log = logging.getLogger(__name__)

# Events read for one counts answer (newest first); more in the range sets ``truncated``.
MAX_COUNT_SCAN = 5000
BUCKET_S = {"hour": 3600, "day": 86400}
DEFAULT_SPAN = {"hour": dt.timedelta(hours=24), "day": dt.timedelta(days=30)}
MAX_SPAN = {"hour": dt.timedelta(days=31), "day": dt.timedelta(days=400)}


def _floor(t: dt.datetime, bucket: str) -> dt.datetime:
    t = t.astimezone(dt.timezone.utc)
    return t.replace(minute=0, second=0, microsecond=0) if bucket == "hour" else \
        t.replace(hour=0, minute=0, second=0, microsecond=0)


def counts(req: Request):
    """``GET /v1/analytics/counts``: events per time bucket (UTC), split by label, camera or zone (``CountsOut``).

    Counts detections unless ``kind`` is given (``camera_health`` or ``recording``: those events instead), so
    requested recordings and camera health events do not inflate "detections per hour/day". An event counts
    once in ``total`` and once under each of its labels (or zones; an event without zones counts only in
    ``total``). At most ``MAX_COUNT_SCAN`` events are read, newest first (more: ``truncated``).

    Raises:
        ApiError: 400 (field ``since``) for ``since >= until`` or a range longer than ``MAX_SPAN[bucket]``.
    """
    f: m.CountsQuery = req.query
    until = f.until or req.now
    since = f.since or (until - DEFAULT_SPAN[f.bucket])
    if since >= until:
        raise ApiError(400, "since must be before until", "since")
    if until - since > MAX_SPAN[f.bucket]:
        raise ApiError(400, f"range longer than {MAX_SPAN[f.bucket].days} days for bucket={f.bucket}", "since")
    q = (pipeline.tenant_ref(req.tenant_id).collection("events")
         .where(filter=fs.FieldFilter("kind", "==", f.kind))
         .where(filter=fs.FieldFilter("start_time", ">=", since))
         .where(filter=fs.FieldFilter("start_time", "<", until))
         .order_by("start_time", direction=fs.Query.DESCENDING)
         .select(["start_time", "labels", "camera_id", "zones"]).limit(MAX_COUNT_SCAN + 1))
    snaps = list(q.stream())
    truncated = len(snaps) > MAX_COUNT_SCAN
    per_bucket: dict[dt.datetime, Counter] = {}
    totals: Counter = Counter()
    for snap in snaps[:MAX_COUNT_SCAN]:
        d = snap.to_dict()
        start = d.get("start_time")
        if not isinstance(start, dt.datetime):
            continue
        b = _floor(start, f.bucket)
        totals[b] += 1
        keys = {"label": d.get("labels") or [], "camera": [d.get("camera_id")] if d.get("camera_id") else [],
                "zone": d.get("zones") or []}[f.by]
        c = per_bucket.setdefault(b, Counter())
        for k in dict.fromkeys(str(k) for k in keys):
            c[k] += 1
    buckets = []
    t, step = _floor(since, f.bucket), dt.timedelta(seconds=BUCKET_S[f.bucket])
    while t < until:
        buckets.append(m.CountBucket(start=t, total=totals.get(t, 0), counts=dict(per_bucket.get(t, {}))))
        t += step
    return m.CountsOut(bucket=f.bucket, by=f.by, since=since, until=until, total=sum(totals.values()),
                       buckets=buckets, truncated=truncated), 200


def usage(req: Request):
    """``GET /v1/usage?month=YYYY-MM`` (default: the current UTC month): the counters of
    ``tenants/{t}/usage/{YYYY-MM}`` (``vigint.usage``), 0 where none were written."""
    month = req.query.month or req.now.strftime("%Y-%m")
    return m.UsageOut(month=month, **vusage.get(req.tenant_id, month)), 200
