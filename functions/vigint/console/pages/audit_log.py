"""The tenant's audit log (``manage``): ``/settings/audit`` (newest first, a page at a time, filtered by action
prefix and time range) and ``/settings/audit.csv`` (the same filters, as a CSV attachment).

Entries are read newest first on ``at`` (``tenants/{t}/audit``, ``vigint.audit``: its automatic single-field
index; no composite index), optionally bounded by ``at`` (the time range); the action prefix is applied to the
entries read, and a page reads at most ``MAX_SCAN`` entries (then it says so and offers the next page), so a rare
prefix cannot make one request read the whole log. The cursor is the id of the last entry read (the next page
starts after it). CSV cells that begin with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a leading
``'``, so a spreadsheet does not run them as formulas (OWASP "CSV Injection").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zoneinfo

from google.cloud import firestore as fs

from vigint import audit, pipeline
from vigint.console.http import ConsoleRequest, HttpError, Response

PAGE_SIZE = 50
MAX_SCAN = 1000
CSV_MAX_ROWS = 10_000
READ_CHUNK = 200
ACTION_PREFIX = re.compile(r"^[a-z0-9_.-]{0,64}$")
ENTRY_ID = re.compile(r"^[0-9]{16}-[0-9a-f]{8}$")
CSV_COLUMNS = ["at", "action", "actor_kind", "actor_id", "actor_name", "target_kind", "target_id", "details"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Families offered in the filter (any prefix may be typed).
FAMILIES = ["user.", "settings.", "apikey.", "event.", "link.", "camera.", "device.", "alert."]


def _zone(tenant_id: str) -> str:
    tz = (pipeline.tenant_ref(tenant_id).get().to_dict() or {}).get("timezone")
    try:
        zoneinfo.ZoneInfo(tz or "UTC")
        return tz or "UTC"
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "UTC"


def _filters(req: ConsoleRequest, tz: str) -> tuple[dict, dict]:
    """``(form, bounds)``: the filter form's values and ``{"prefix", "since", "until"}`` (datetimes in UTC; the
    form's dates are days in ``tz``, ``until`` inclusive).

    Raises:
        HttpError: 400 naming the bad field.
    """
    form = {k: (req.query.get(k) or "").strip() for k in ("action", "since", "until")}
    if not ACTION_PREFIX.match(form["action"]):
        raise HttpError(400, "Action: lower-case letters, digits, '.', '_' or '-'.")
    zone = zoneinfo.ZoneInfo(tz)
    bounds: dict = {"prefix": form["action"], "since": None, "until": None}
    for name in ("since", "until"):
        if form[name]:
            try:
                day = dt.date.fromisoformat(form[name])
            except ValueError:
                raise HttpError(400, f"{name.title()}: a date YYYY-MM-DD.") from None
            if name == "until":
                day += dt.timedelta(days=1)
            bounds[name] = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.timezone.utc)
    if bounds["since"] and bounds["until"] and bounds["since"] >= bounds["until"]:
        raise HttpError(400, "Since must be on or before until.")
    return form, bounds


def scan(tenant_id: str, bounds: dict, *, after: str | None, want: int, max_scan: int) -> tuple[list[dict], str | None]:
    """Entries newest first that match ``bounds``: at most ``want``, reading at most ``max_scan``.

    Returns:
        ``(entries, cursor)``: ``cursor`` is the id of the last entry read when more may follow, else None.
    """
    col = pipeline.tenant_ref(tenant_id).collection("audit")
    base = col.order_by("at", direction=fs.Query.DESCENDING)
    if bounds.get("since"):
        base = base.where(filter=fs.FieldFilter("at", ">=", bounds["since"]))
    if bounds.get("until"):
        base = base.where(filter=fs.FieldFilter("at", "<", bounds["until"]))
    start = None
    if after:
        snap = col.document(after).get()
        start = snap if snap.exists else None
    prefix = bounds.get("prefix") or ""
    out: list[dict] = []
    read, last = 0, None
    while read < max_scan:
        n = min(READ_CHUNK, max_scan - read)
        chunk = list((base.start_after(start) if start is not None else base).limit(n).stream())
        for snap in chunk:
            read, last = read + 1, snap
            d = snap.to_dict() or {}
            if str(d.get("action", "")).startswith(prefix):
                out.append({"id": snap.id, **d})
                if len(out) >= want:
                    return out, snap.id
        if len(chunk) < n:
            return out, None  # the end of the log (or of the range)
        start = chunk[-1]
    return out, last.id if last is not None else None


def audit_page(req: ConsoleRequest) -> Response:
    """``GET /settings/audit?action=&since=&until=&after=``."""
    tz = _zone(req.user.tenant_id)
    form, bounds = _filters(req, tz)
    after = req.query.get("after") or None
    if after is not None and not ENTRY_ID.match(after):
        raise HttpError(400, "Bad page cursor.")
    rows, cursor = scan(req.user.tenant_id, bounds, after=after, want=PAGE_SIZE, max_scan=MAX_SCAN)
    return req.page("audit.html", rows=rows, cursor=cursor, form=form, tz=tz, families=FAMILIES,
                    first_page=after is None)


def csv_cell(value) -> str:
    """One CSV cell: ``value`` as text, with a leading ``'`` when it starts like a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_row(entry: dict) -> list[str]:
    actor, target = entry.get("actor") or {}, entry.get("target") or {}
    at = entry.get("at")
    return [csv_cell(v) for v in (
        at.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if isinstance(at, dt.datetime) else "",
        entry.get("action"), actor.get("kind"), actor.get("id"), actor.get("name"), target.get("kind"),
        target.get("id"), json.dumps(entry.get("details") or {}, sort_keys=True, default=str, ensure_ascii=False))]


def audit_csv(req: ConsoleRequest) -> Response:
    """``GET /settings/audit.csv?action=&since=&until=``: up to ``CSV_MAX_ROWS`` entries, newest first, UTC
    times; the export itself is audited (``audit.export``)."""
    tz = _zone(req.user.tenant_id)
    _form, bounds = _filters(req, tz)
    rows, more = scan(req.user.tenant_id, bounds, after=None, want=CSV_MAX_ROWS, max_scan=10 * CSV_MAX_ROWS)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in rows:
        writer.writerow(_csv_row(entry))
    audit.record(req.user.tenant_id, actor=req.user.actor, action="audit.export", target_kind="tenant",
                 target_id=req.user.tenant_id,
                 details={"rows": len(rows), "action": bounds["prefix"], "truncated": more is not None}, now=req.now)
    name = f"audit-{req.user.tenant_id}-{req.now:%Y%m%dT%H%M%SZ}.csv"
    return buf.getvalue(), 200, {"Content-Type": "text/csv; charset=utf-8",
                                 "Content-Disposition": f'attachment; filename="{name}"'}
