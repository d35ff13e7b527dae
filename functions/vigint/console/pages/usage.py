"""Usage and cost (``manage``): ``/settings/usage?month=YYYY-MM`` (default the current UTC month).

The month's totals are the tenant's counters (``tenants/{t}/usage/{YYYY-MM}``, read through the tenant API's
``analytics.usage``): events stored, clip bytes, Gemini tokens, alert e-mails; their month is that of the
moment of use (of ingestion, of the analysis). The split per camera is summed from the events ingested in the month
(``ingested_at`` in the month, its automatic single-field index; ``clip.bytes`` and ``analysis.total_tokens``;
at most ``MAX_EVENT_SCAN`` events, newest first, else the page says it is partial): the same month as the
counters' except for an event analysed after midnight of the month it was ingested in. Prices come from ``vigint.prices`` (with their sources); the costs are estimates before free tiers.
"""

from __future__ import annotations

import datetime as dt
import re

from google.cloud import firestore as fs

from vigint import pipeline, prices
from vigint.console import access
from vigint.console.http import ConsoleRequest, HttpError, Response
from vigint.tenant_api import analytics
from vigint.tenant_api import models as m

MONTH = re.compile(r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$")
MAX_EVENT_SCAN = 5000
MONTHS_OFFERED = 12


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of ``YYYY-MM`` in UTC."""
    year, mon = int(month[:4]), int(month[5:7])
    start = dt.datetime(year, mon, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start, end


def recent_months(now: dt.datetime, n: int = MONTHS_OFFERED) -> list[str]:
    """The ``n`` months up to ``now``'s (UTC), newest first."""
    year, mon, out = now.year, now.month, []
    for _ in range(n):
        out.append(f"{year:04d}-{mon:02d}")
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return out


def per_camera(tenant_id: str, month: str) -> tuple[list[dict], bool]:
    """``([{"camera_id", "events", "clip_bytes", "gemini_tokens", "cost_usd"}], truncated)`` of the events
    ingested in ``month`` (``ingested_at``, UTC), most events first."""
    start, end = month_bounds(month)
    q = (pipeline.tenant_ref(tenant_id).collection("events")
         .where(filter=fs.FieldFilter("ingested_at", ">=", start))
         .where(filter=fs.FieldFilter("ingested_at", "<", end))
         .order_by("ingested_at", direction=fs.Query.DESCENDING)
         .select(["camera_id", "clip.bytes", "analysis.total_tokens"]).limit(MAX_EVENT_SCAN + 1))
    snaps = list(q.stream())
    rows: dict[str, dict] = {}
    for snap in snaps[:MAX_EVENT_SCAN]:
        d = snap.to_dict() or {}
        cam = str(d.get("camera_id") or "—")
        r = rows.setdefault(cam, {"camera_id": cam, "events": 0, "clip_bytes": 0, "gemini_tokens": 0})
        r["events"] += 1
        r["clip_bytes"] += int(((d.get("clip") or {}).get("bytes")) or 0)
        r["gemini_tokens"] += int(((d.get("analysis") or {}).get("total_tokens")) or 0)
    for r in rows.values():
        r["cost_usd"] = prices.gemini_usd(r["gemini_tokens"]) + prices.storage_usd_per_month(r["clip_bytes"])
    return sorted(rows.values(), key=lambda r: (-r["events"], r["camera_id"])), len(snaps) > MAX_EVENT_SCAN


def usage_page(req: ConsoleRequest) -> Response:
    """``GET /settings/usage?month=YYYY-MM``."""
    month = req.query.get("month") or f"{req.now:%Y-%m}"
    if not MONTH.match(month):
        raise HttpError(400, "Month: YYYY-MM.")
    totals: m.UsageOut = access.api(req, analytics.usage, query=m.UsageQuery(month=month))
    cams, truncated = per_camera(req.user.tenant_id, month)
    visible = {c.camera_id: c for c in access.cameras(req.user)}
    for r in cams:
        cam = visible.get(r["camera_id"])
        r["name"] = (cam.doc.get("name") if cam else None) or r["camera_id"]
    gemini_usd = prices.gemini_usd(totals.gemini_tokens)
    storage_usd = prices.storage_usd_per_month(totals.clip_bytes)
    months = recent_months(req.now)
    if month not in months:
        months.append(month)
    return req.page("usage.html", month=month, months=months, totals=totals, cams=cams, truncated=truncated,
                    gemini_usd=gemini_usd, storage_usd=storage_usd, total_usd=gemini_usd + storage_usd,
                    gemini_rate=prices.gemini_usd_per_million_blended(), prices=prices)
