"""Handlers: event counts over time (``/v1/analytics/counts``) and monthly use (``/v1/usage``).

Usage document (written by the pipeline through ``increment_usage``; every field optional)::

    tenants/{t}/usage/{YYYY-MM}   gemini_tokens (int, input + output tokens of analysis calls),
                                  gemini_input_tokens, gemini_output_tokens, emails_sent (int, alert
                                  e-mails accepted by the SMTP server), updated_at

``events``, ``clip_bytes`` and ``snapshot_bytes`` are not kept there: ``GET /v1/usage`` counts them at
query time from the events whose ``start_time`` falls in the month (Firestore count/sum aggregations, so no
scan limit applies).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from google.cloud import firestore as fs

from vigint import pipeline
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request

log = logging.getLogger(__name__)

# Events read for one counts answer (newest first); more in the range sets ``truncated``.
MAX_COUNT_SCAN = 5000
BUCKET_S = {"hour": 3600, "day": 86400}
DEFAULT_SPAN = {"hour": dt.timedelta(hours=24), "day": dt.timedelta(days=30)}
MAX_SPAN = {"hour": dt.timedelta(days=31), "day": dt.timedelta(days=400)}
USAGE_COUNTERS = ("gemini_tokens", "gemini_input_tokens", "gemini_output_tokens", "emails_sent")


def _floor(t: dt.datetime, bucket: str) -> dt.datetime:
    t = t.astimezone(dt.timezone.utc)
    return t.replace(minute=0, second=0, microsecond=0) if bucket == "hour" else \
        t.replace(hour=0, minute=0, second=0, microsecond=0)


def counts(req: Request):
    """``GET /v1/analytics/counts``: events per time bucket (UTC), split by label, camera or zone.

    An event counts once in ``total`` and once under each of its labels (or zones; an event without
    zones counts only in ``total``).
    """
    f: m.CountsQuery = req.query
    until = f.until or req.now
    since = f.since or (until - DEFAULT_SPAN[f.bucket])
    if since >= until:
        raise ApiError(400, "since must be before until", "since")
    if until - since > MAX_SPAN[f.bucket]:
        raise ApiError(400, f"range longer than {MAX_SPAN[f.bucket].days} days for bucket={f.bucket}", "since")
    q = (pipeline.tenant_ref(req.tenant_id).collection("events")
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
    """``GET /v1/usage?month=YYYY-MM`` (default: the current UTC month)."""
    month = req.query.month or req.now.strftime("%Y-%m")
    start, end = m.month_bounds(month)
    tenant = pipeline.tenant_ref(req.tenant_id)
    q = (tenant.collection("events").where(filter=fs.FieldFilter("start_time", ">=", start))
         .where(filter=fs.FieldFilter("start_time", "<", end)))
    agg = q.count(alias="events").sum("clip.bytes", alias="clip_bytes").sum("snapshot.bytes", alias="snapshot_bytes")
    values = {r.alias: r.value for r in agg.get()[0]}
    snap = tenant.collection("usage").document(month).get()
    counters = snap.to_dict() if snap.exists else {}

    def n(v) -> int:
        return int(v) if isinstance(v, (int, float)) else 0

    return m.UsageOut(month=month, events=n(values.get("events")), clip_bytes=n(values.get("clip_bytes")),
                      snapshot_bytes=n(values.get("snapshot_bytes")),
                      gemini_tokens=n(counters.get("gemini_tokens")), emails_sent=n(counters.get("emails_sent")),
                      truncated=False), 200


def increment_usage(tenant_id: str, *, when: dt.datetime | None = None, **counters: int) -> None:
    """Adds to the tenant's usage counters of the month of ``when`` (UTC, default now).

    Args:
        tenant_id: the tenant.
        when: the moment the use happened (picks the ``YYYY-MM`` document).
        counters: any of ``USAGE_COUNTERS`` with the amount to add, e.g. ``emails_sent=1``.

    Raises:
        ValueError: an unknown counter name.
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    bad = set(counters) - set(USAGE_COUNTERS)
    if bad:
        raise ValueError(f"unknown usage counters: {', '.join(sorted(bad))}")
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    doc = {k: fs.Increment(int(v)) for k, v in counters.items() if v}
    if not doc:
        return
    doc["updated_at"] = fs.SERVER_TIMESTAMP
    pipeline.tenant_ref(tenant_id).collection("usage").document(when.strftime("%Y-%m")).set(doc, merge=True)
