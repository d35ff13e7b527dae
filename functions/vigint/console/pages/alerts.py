"""The alerts inbox (``/alerts``): alerted events, the unacknowledged ones first, acknowledged one or many at
once (checkboxes and one button; operator+), each acknowledgement audited.

The unacknowledged list is the tenant API's ``list_alerts`` query with ``acknowledged=false`` (``alert.alerted
== true``, unacknowledged kept in memory), over the user's cameras (``events.merged_page``: ``camera_id in``,
30 at a time), paged by htmx like the events timeline; below it the ``RECENT_ACKED`` latest acknowledged
alerts (``ack.acknowledged == true``). Indexes: ``(alert.alerted, start_time DESC)``, ``(ack.acknowledged,
start_time DESC)`` and ``(camera_id, start_time DESC)`` of ``terraform/firestore.tf``, merged by Firestore.
"""

from __future__ import annotations

import logging
import re

from vigint.console import access
from vigint.console.http import ConsoleRequest, HttpError, Response, not_found, redirect
from vigint.console.pages import events
from vigint.schema import EVENT_ID_PATTERN

log = logging.getLogger(__name__)

RECENT_ACKED = 20
MAX_BATCH = 100
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def _lists(req: ConsoleRequest, cursor: str | None):
    cams = access.cameras(req.user) if req.user.site_ids is not None or req.query.get("site") else None
    f = events.parse_filters(req, cameras=cams)
    unacked, nxt = events.merged_page(req.user.tenant_id, f.query, f.camera_ids, acknowledged=False, alerts=True,
                                      cursor=cursor)
    return f, unacked, nxt, cams


def alerts_page(req: ConsoleRequest) -> Response:
    """``GET /alerts``: unacknowledged alerts (paged), then the latest acknowledged ones."""
    f, unacked, nxt, _ = _lists(req, None)
    acked, _more = events.merged_page(req.user.tenant_id, f.query, f.camera_ids, acknowledged=True, alerts=True,
                                      limit=RECENT_ACKED, cursor="")
    shown = events.items(req, unacked)
    return req.page("alerts.html", f=f, items=shown, acked=events.items(req, acked), next_cursor=nxt,
                    qs=events.filter_qs(f), page_url="/alerts/page", notice=req.query.get("notice", ""),
                    top=shown[0]["cursor"] if shown else "")


def alerts_more(req: ConsoleRequest) -> Response:
    """``GET /alerts/page?cursor=``: the next unacknowledged alerts (fragment)."""
    f, unacked, nxt, _ = _lists(req, None)
    return req.page("_alert_rows.html", items=events.items(req, unacked), next_cursor=nxt, qs=events.filter_qs(f),
                    page_url="/alerts/page")


def alerts_ack(req: ConsoleRequest) -> Response:
    """``POST /alerts/ack`` (operator+): acknowledges every checked ``event_id`` (at most ``MAX_BATCH``) with the
    optional ``comment``. Every id is checked first (an event the user may not see, or that is not an alert:
    the uniform 404 and nothing is acknowledged)."""
    ids = list(dict.fromkeys(v for v in (req.form.get("event_id") or []) if v))
    if not ids:
        raise HttpError(400, "event_id: tick at least one alert")
    if len(ids) > MAX_BATCH:
        raise HttpError(400, f"event_id: at most {MAX_BATCH} at once")
    for event_id in ids:
        if not _EVENT_ID.fullmatch(event_id):
            raise not_found()
        doc = access.event(req.user, event_id)
        if not (doc.get("alert") or {}).get("alerted"):
            raise not_found()
    done = sum(events.acknowledge(req, event_id, req.field("comment")) for event_id in ids)
    log.info("console: user %s acknowledged %d of %d alerts", req.user.user_id, done, len(ids))
    return redirect(f"/alerts?notice=acknowledged-{done}")
