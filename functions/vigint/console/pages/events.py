"""Events: the timeline (``/events``), its pages and new-event fragments, and the event page
(``/events/{event_id}``) with its player, verdict, detections, step timings, acknowledgement, share links and
clip requests.

Listing. The filters are the tenant API's ``EventsQuery`` (``vigint.tenant_api.models``) plus ``site`` and
``acknowledged``; the query is the one ``tenant_api.events.list_events`` builds (range on ``start_time``,
equality on ``camera_id``/``severity``, ``array_contains`` on ``labels`` or ``zones``), ordered and paged by the
tenant API's ``scan_page`` (``start_time`` DESC, then id DESC; the same opaque cursors), its answers made by the
tenant API's ``summary``. The console runs the query itself rather than calling ``list_events`` because it
needs each event's snapshot object for the thumbnail (``EventSummary`` does not carry it) and because a user
limited to some sites (or a site filter) lists the events of a set of cameras: ``camera_id in [...]``, at most
30 values per query (https://firebase.google.com/docs/firestore/query-data/queries#limits_on_or_queries), so the
cameras are taken 30 at a time, one query each, and the pages merged (``merged_page``) so that a page never ends
early and never skips an event. An event of a camera the user may not see is never read into a page.

New events: the page polls ``/events/newer?after=<cursor of the top event>`` every ``POLL_S`` seconds (htmx);
the answer is the newer items (prepended) and a fresh poller (out-of-band swap), or ``204`` when there is none.

Firestore indexes (``terraform/firestore.tf``): the per-field ``(field, start_time DESC)`` indexes of the tenant
API's listings serve these queries (Firestore merges them for several equality filters; ``in`` is a set of
equality filters).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import zoneinfo
from typing import Any
from urllib.parse import urlencode

from google.cloud import firestore as fs

from vigint import audit, clients, config, links, pipeline, storage, video_link
from vigint.console import access, sites as sites_mod
from vigint.render import short_duration
from vigint.console.http import ConsoleRequest, HttpError, Response, not_found, redirect
from vigint.schema import EVENT_ID_PATTERN, event_prefix
from vigint.tenant_api import commands as commands_api
from vigint.tenant_api import events as events_api
from vigint.tenant_api import links as links_api
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, validate

log = logging.getLogger(__name__)

PAGE_SIZE = 25
NEWER_LIMIT = 50
POLL_S = 5
EMPTY_LAG_S = 120
# Firestore: at most 30 values in one ``in`` filter (disjunctions per query).
IN_LIMIT = 30
MAX_COMMENT = 500
MAX_RECIPIENT = 200
SHARE_TTLS = {"3600": "1 hour", "86400": "1 day", "604800": "7 days"}
EVENT_PARAMS = {"event_id": re.compile(EVENT_ID_PATTERN)}
LINK_PARAMS = {**EVENT_PARAMS, "link_id": re.compile(links.LINK_ID_PATTERN)}
FILTER_FIELDS = ("site", "camera_id", "label", "zone", "severity", "min_threat_level", "acknowledged", "since",
                 "until")


# ------------------------------------------------------------------------------------------ cameras


@dataclasses.dataclass(frozen=True)
class CameraMeta:
    """What a listing shows of a camera: its name, site and the time zone its times are shown in."""

    camera_id: str
    name: str
    site: sites_mod.Site | None
    time_zone: str


def tenant_zone(tenant_id: str) -> str:
    """The tenant's IANA time zone (``tenants/{t}.timezone``), else ``UTC``."""
    tz = (pipeline.tenant_ref(tenant_id).get().to_dict() or {}).get("timezone")
    return tz if _valid_zone(tz) else "UTC"


def _valid_zone(tz: Any) -> bool:
    if not isinstance(tz, str) or not tz:
        return False
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def camera_meta(tenant_id: str, camera_ids, *, default_zone: str) -> dict[str, CameraMeta]:
    """Name, site and time zone of each camera id (one ``get_all`` of the cameras, one of their devices, one
    query of the sites); a camera without a document keeps its id as name and the tenant's zone."""
    ids = sorted({c for c in camera_ids if c})
    tenant = pipeline.tenant_ref(tenant_id)
    db = clients.firestore()
    cams = {s.id: s.to_dict() or {} for s in db.get_all([tenant.collection("cameras").document(c) for c in ids])
            if s.exists} if ids else {}
    dev_ids = sorted({d.get("device_id") for d in cams.values() if d.get("device_id")})
    devs = {s.id: s.to_dict() or {} for s in db.get_all([tenant.collection("devices").document(d) for d in dev_ids])
            if s.exists} if dev_ids else {}
    known = {s.site_id: s for s in sites_mod.list_sites(tenant_id)} if cams else {}
    out = {}
    for cid in ids:
        doc = cams.get(cid, {})
        sid = sites_mod.camera_site(doc, devs.get(doc.get("device_id"))) if doc else None
        site = known.get(sid) or (sites_mod.Site(sid, sid, None) if sid else None)
        zone = site.time_zone if site and _valid_zone(site.time_zone) else default_zone
        out[cid] = CameraMeta(cid, str(doc.get("name") or cid), site, zone)
    return out


# ------------------------------------------------------------------------------------------ filters


@dataclasses.dataclass
class Filters:
    """The listing's filters as the form shows them (``form``) and as the query uses them.

    Attributes:
        form: field -> the text the form shows (``since``/``until`` as ``YYYY-MM-DDTHH:MM`` in ``zone``).
        query: the tenant API's ``EventsQuery`` (times in UTC).
        acknowledged: True / False / None (either).
        camera_ids: the cameras to list (None: every camera of the tenant, the user sees every site).
        zone: the IANA zone the form's times are in (the site's or camera's, else the tenant's).
    """

    form: dict[str, str]
    query: m.EventsQuery
    acknowledged: bool | None
    camera_ids: list[str] | None
    zone: str


def _local_input(value: str, zone: str, field: str) -> dt.datetime | None:
    """A ``datetime-local`` value (``YYYY-MM-DDTHH:MM[:SS]``) in ``zone`` as UTC."""
    if not value:
        return None
    try:
        local = dt.datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, f"{field}: not a date and time (YYYY-MM-DDTHH:MM)") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return local.astimezone(dt.timezone.utc)


def parse_filters(req: ConsoleRequest, *, cameras: list[access.Camera] | None = None) -> Filters:
    """The filters of ``req.query`` for ``req.user``.

    Raises:
        HttpError: 404 for a site or camera the user may not see (the same as a missing one); 400 for a
            malformed value (the message names the field).
    """
    user = req.user
    raw = {k: (req.query.get(k) or "").strip() for k in FILTER_FIELDS}
    cams = cameras if cameras is not None else (access.cameras(user) if user.site_ids is not None or raw["site"]
                                                else None)
    visible = [c.camera_id for c in cams] if cams is not None else None
    camera_ids: list[str] | None = None
    zone = None
    if raw["site"]:
        if not user.sees_site(raw["site"]):
            raise not_found()
        camera_ids = [c.camera_id for c in cams if c.site_id == raw["site"]]
        site = next((s for s in sites_mod.list_sites(user.tenant_id) if s.site_id == raw["site"]), None)
        zone = site.time_zone if site and _valid_zone(site.time_zone) else None
    elif user.site_ids is not None:
        camera_ids = list(visible)
    camera_eq = None
    if raw["camera_id"]:
        if user.site_ids is not None and raw["camera_id"] not in visible:
            raise not_found()
        if camera_ids is not None:  # with a site: that camera if it is of the site, else nothing
            camera_ids = [raw["camera_id"]] if raw["camera_id"] in camera_ids else []
        else:
            camera_eq = raw["camera_id"]
        if zone is None:
            meta = camera_meta(user.tenant_id, [raw["camera_id"]], default_zone="")
            zone = meta[raw["camera_id"]].time_zone or None
    zone = zone or tenant_zone(user.tenant_id)
    ack = {"yes": True, "no": False, "": None}.get(raw["acknowledged"], "bad")
    if ack == "bad":
        raise HttpError(400, "acknowledged: yes, no or empty")
    data = {k: raw[k] for k in ("label", "zone", "severity", "min_threat_level") if raw[k]}
    if camera_eq:
        data["camera_id"] = camera_eq
    since, until = _local_input(raw["since"], zone, "since"), _local_input(raw["until"], zone, "until")
    if since:
        data["since"] = since.isoformat()
    if until:
        data["until"] = until.isoformat()
    cursor = (req.query.get("cursor") or "").strip()
    if cursor:
        data["cursor"] = cursor
    try:
        q = validate(m.EventsQuery, {**data, "limit": PAGE_SIZE}, "query")
        if q.cursor:
            events_api.decode_cursor(q.cursor)
    except ApiError as exc:
        raise HttpError(400, exc.message) from None
    return Filters(form=raw, query=q, acknowledged=ack, camera_ids=camera_ids, zone=zone)


def filter_qs(f: Filters, **extra) -> str:
    """The query string of the filters (and ``extra``), for the next page and the poller."""
    pairs = [(k, v) for k, v in f.form.items() if v]
    pairs += [(k, v) for k, v in extra.items() if v]
    return urlencode(pairs)


# ------------------------------------------------------------------------------------------ queries


def _position(snap) -> tuple[dt.datetime, str]:
    """Where an event sits in the listing's order (compared descending): ``(start_time UTC, event id)``."""
    return pipeline.as_utc(snap.get("start_time")), snap.id


def _keep(f: m.EventsQuery, acknowledged: bool | None, alerts: bool):
    """The in-memory predicate of ``list_events``/``list_alerts`` (``events_api.in_memory_keep``, and the
    acknowledged filter where the query does not apply it), or None when Firestore applies every filter."""
    ack_in_memory = acknowledged is False or (acknowledged is True and not alerts)
    also = (lambda d: bool(events_api.field_of(d, "ack.acknowledged")) == acknowledged) if ack_in_memory else None
    return events_api.in_memory_keep(f, also)


def _query(tenant_id: str, f: m.EventsQuery, cameras: list[str] | None, *, alerts: bool,
           acknowledged: bool | None):
    """The Firestore query of ``list_events`` (``alerts``: of ``list_alerts``), for ``cameras`` (None: the
    ``camera_id`` filter or every camera; at most ``IN_LIMIT``)."""
    q = events_api.filtered_query(tenant_id, f, cameras)
    if alerts:
        q = q.where(filter=fs.FieldFilter("alert.alerted", "==", True))
        if acknowledged is True:
            q = q.where(filter=fs.FieldFilter("ack.acknowledged", "==", True))
    return q


def merged_page(tenant_id: str, f: m.EventsQuery, camera_ids: list[str] | None, *, acknowledged: bool | None = None,
                alerts: bool = False, limit: int | None = None, cursor: str | None = None) -> tuple[list, str | None]:
    """One page of events (snapshots), newest first, over ``camera_ids`` (None: no camera restriction).

    Each group of at most ``IN_LIMIT`` cameras is one query paged by ``scan_page`` from the same cursor. A
    group that stops before its end (a full page, or ``MAX_SCAN`` events scanned for in-memory filters) stops
    at a position (its ``next_cursor``); the merged page holds only events at or above the newest such position
    (every group has been read that far), so no event of another group is skipped, and the next cursor is the
    page's last event, or that position when the page took every event above it. A null cursor means no group
    has anything more.

    Returns:
        ``(snapshots, next_cursor)``.
    """
    limit = limit or f.limit
    cursor = f.cursor if cursor is None else cursor
    keep = _keep(f, acknowledged, alerts)
    if camera_ids is not None and not camera_ids:
        return [], None
    groups = [None] if camera_ids is None else [camera_ids[i:i + IN_LIMIT] for i in range(0, len(camera_ids),
                                                                                          IN_LIMIT)]
    found, frontier = [], None
    for group in groups:
        snaps, nxt = events_api.scan_page(_query(tenant_id, f, group, alerts=alerts, acknowledged=acknowledged),
                                          limit=limit, cursor=cursor or None, keep=keep)
        found.extend(snaps)
        if nxt is not None:
            pos = events_api.decode_cursor(nxt)
            frontier = pos if frontier is None or pos > frontier else frontier
    found.sort(key=_position, reverse=True)
    eligible = [s for s in found if frontier is None or _position(s) >= frontier]
    page = eligible[:limit]
    if len(eligible) > limit:
        return page, events_api.encode_cursor(*_position(page[-1]))
    if frontier is not None:
        return page, events_api.encode_cursor(*frontier)
    return page, None


# ------------------------------------------------------------------------------------------ items


def thumb_url(tenant_id: str, doc: dict, event_id: str, now: dt.datetime) -> str | None:
    """A short-lived signed GET URL of the event's snapshot (only an object under the event's own prefix, as
    ``GET /v1/events/{id}`` signs them; at most 60 s: ``video_link.playback_url_ttl_seconds``), or None."""
    obj = events_api.field_of(doc, "snapshot.object")
    prefix = event_prefix(tenant_id, str(doc.get("device_id")), event_id)
    if not isinstance(obj, str) or not obj.startswith(prefix):
        return None
    try:
        return video_link.signed_get(obj, video_link.playback_url_ttl_seconds(), now)
    except storage.SigningError:
        log.error("console: cannot sign URLs (no signing credentials configured)")
        return None


def items(req: ConsoleRequest, snaps: list) -> list[dict]:
    """What a listing shows of each event: ``{"e": EventSummary, "camera": CameraMeta, "thumb": url|None}``."""
    if not snaps:
        return []
    zone = tenant_zone(req.user.tenant_id)
    meta = camera_meta(req.user.tenant_id, [s.get("camera_id") for s in snaps], default_zone=zone)
    out = []
    for snap in snaps:
        doc = snap.to_dict() or {}
        cid = str(doc.get("camera_id") or "")
        out.append({"e": events_api.summary(snap), "camera": meta.get(cid) or CameraMeta(cid, cid, None, zone),
                    "thumb": thumb_url(req.user.tenant_id, doc, snap.id, req.now),
                    "cursor": events_api.encode_cursor(*_position(snap))})
    return out


def _options(req: ConsoleRequest, cams: list[access.Camera]) -> dict:
    """Choices of the filter form: the user's sites and cameras."""
    known = {s.site_id: s for s in sites_mod.list_sites(req.user.tenant_id)}
    site_ids = sorted({c.site_id for c in cams if c.site_id})
    return {"sites": [known.get(s) or sites_mod.Site(s, s, None) for s in site_ids],
            "cameras": [(c.camera_id, c.doc.get("name") or c.camera_id) for c in cams]}


# ------------------------------------------------------------------------------------------ listing pages


def events_page(req: ConsoleRequest) -> Response:
    """``GET /events``: the filter form and the first page (htmx loads the next as the last item shows)."""
    cams = access.cameras(req.user)
    f = parse_filters(req, cameras=cams)
    snaps, nxt = merged_page(req.user.tenant_id, f.query, f.camera_ids, acknowledged=f.acknowledged)
    shown = items(req, snaps)
    return req.page("events.html", f=f, items=shown, next_cursor=nxt, qs=filter_qs(f),
                    top=shown[0]["cursor"] if shown else empty_top(req.now), options=_options(req, cams), poll_s=POLL_S,
                    page_url="/events/page", newer_url="/events/newer")


def events_more(req: ConsoleRequest) -> Response:
    """``GET /events/page?cursor=``: the next page's items (a fragment; the last one loads the next)."""
    f = parse_filters(req)
    snaps, nxt = merged_page(req.user.tenant_id, f.query, f.camera_ids, acknowledged=f.acknowledged)
    return req.page("_event_items.html", items=items(req, snaps), next_cursor=nxt, qs=filter_qs(f),
                    page_url="/events/page")


def empty_top(now: dt.datetime) -> str:
    """The poller's ``after`` cursor of an empty listing: ``EMPTY_LAG_S`` before ``now`` (an event's
    ``start_time`` is its first frame, pre-roll included, seconds before it reaches the cloud; the listing was
    empty, so no matching event that old was missed)."""
    return events_api.encode_cursor(now - dt.timedelta(seconds=EMPTY_LAG_S), "00000000")


def newer_snaps(req: ConsoleRequest, f: Filters, after: str, *, alerts: bool = False) -> tuple[list, bool]:
    """Events newer than the cursor ``after`` (the top of the page) that match ``f``, newest first, and
    whether there are more than ``NEWER_LIMIT`` of them."""
    top = events_api.decode_cursor(after) if after else None
    q = f.query
    if top is not None and (q.since is None or q.since < top[0]):
        q = q.model_copy(update={"since": top[0]})
    snaps, nxt = merged_page(req.user.tenant_id, q, f.camera_ids, acknowledged=f.acknowledged, alerts=alerts,
                             limit=NEWER_LIMIT, cursor="")
    fresh = [s for s in snaps if top is None or _position(s) > top]
    return fresh, bool(fresh) and nxt is not None and len(fresh) == len(snaps)


def events_newer(req: ConsoleRequest) -> Response:
    """``GET /events/newer?after=``: items newer than the top one (prepended) and the poller with the new
    top, or ``204`` when there is nothing new; more than a page of them: ``HX-Refresh``."""
    f = parse_filters(req)
    try:
        fresh, more = newer_snaps(req, f, (req.query.get("after") or "").strip())
    except ApiError as exc:
        raise HttpError(400, exc.message) from None
    if more:
        return "", 200, {"HX-Refresh": "true"}
    if not fresh:
        return "", 204, {}
    shown = items(req, fresh)
    return req.page("_event_newer.html", items=shown, top=shown[0]["cursor"], qs=filter_qs(f), poll_s=POLL_S,
                    newer_url="/events/newer", next_cursor=None, page_url="/events/page")


# ------------------------------------------------------------------------------------------ the event page


def _event(req: ConsoleRequest) -> dict:
    """The path's event document, for a user who may see its camera (else the uniform 404)."""
    doc = access.event(req.user, req.params["event_id"])
    if "event_id" not in doc:  # a placeholder of a continuation that arrived first: no event yet
        raise not_found()
    return doc


def _utc(t: Any) -> dt.datetime | None:
    if isinstance(t, str):
        try:
            t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
    return pipeline.as_utc(t)


def steps(doc: dict) -> list[dict]:
    """The pipeline's step times of an event: ``[{"name", "at": UTC datetime, "after_s": seconds since the
    first, "after": the same in words (``+2.3 s``, ``+4 min 12 s``)}]`` for each known step (first seen, confirmed, ingested, analyzed, alerted, ended), in that order.

    Version 2 events have ``timeline``; version 1 events fall back on ``start_time``, ``ingested_at``,
    ``analysis.analyzed_at`` and ``alert.decided_at``."""
    tl = doc.get("timeline") if isinstance(doc.get("timeline"), dict) else {}
    analysis = doc.get("analysis") if isinstance(doc.get("analysis"), dict) else {}
    alert = doc.get("alert") if isinstance(doc.get("alert"), dict) else {}
    raw = [("First seen", tl.get("first_seen") or doc.get("first_seen") or doc.get("start_time")),
           ("Confirmed", tl.get("confirmed") or doc.get("confirmed_at")),
           ("Sent by the device", tl.get("start_published")),
           ("Ingested", tl.get("ingested") or doc.get("ingested_at")),
           ("Analyzed", tl.get("first_verdict") or analysis.get("analyzed_at")),
           ("Alerted", tl.get("alert_sent") or (alert.get("decided_at") if alert.get("alerted") else None)),
           ("Ended", tl.get("end") or (doc.get("end_time") if doc.get("ended", True) else None))]
    out = [{"name": n, "at": t} for n, t in ((n, _utc(t)) for n, t in raw) if t is not None]
    if out:
        first = out[0]["at"]
        for s in out:
            s["after_s"] = (s["at"] - first).total_seconds()
            s["after"] = (f"+{s['after_s']:.1f} s" if abs(s["after_s"]) < 60 else
                          ("+" if s["after_s"] >= 0 else "-") + short_duration(abs(s["after_s"])))
    return out


def detections(doc: dict) -> list[dict]:
    """The event's detections by time: ``[{"at": UTC datetime, "label", "score": 0..1, "box": [x1, y1, x2, y2]
    (0..1 of the frame)}]``."""
    out = []
    for d in doc.get("detections") or []:
        if isinstance(d, dict) and _utc(d.get("time")):
            out.append({"at": _utc(d.get("time")), "label": str(d.get("label", "")),
                        "score": d.get("score") if isinstance(d.get("score"), (int, float)) else None,
                        "box": d.get("box") if isinstance(d.get("box"), list) else []})
    return sorted(out, key=lambda d: d["at"])


def zone_events(doc: dict) -> list[dict]:
    """The event's zone entries and exits as stored (``zone_events``, docs/contracts.md): ``[{"at": UTC
    datetime, "zone", "track_id": int | None, "label", "kind": "enter"|"exit"}]``, in stored order; entries
    without a readable time or kind are left out."""
    out = []
    for z in doc.get("zone_events") or []:
        if isinstance(z, dict) and _utc(z.get("time")) and z.get("kind") in ("enter", "exit"):
            tid = z.get("track_id")
            out.append({"at": _utc(z.get("time")), "zone": str(z.get("zone", "")), "label": str(z.get("label", "")),
                        "track_id": tid if isinstance(tid, int) and not isinstance(tid, bool) else None,
                        "kind": z["kind"]})
    return out


def timeline(doc: dict) -> list[dict]:
    """Detections (``detections``) and zone entries/exits (``zone_events``) on one timeline, in time order
    (at the same instant a detection comes first, then entries and exits as the device decided them):
    ``[{"kind": "detection"|"enter"|"exit", "at": UTC datetime, "offset_s": seconds since the event's
    ``start_time`` (the clip's zero) or None, "label", ...}]``, detections with ``score`` and ``box``, zone
    changes with ``zone`` and ``track_id``."""
    start = _utc(doc.get("start_time"))
    rows = [{**d, "kind": "detection"} for d in detections(doc)] + zone_events(doc)
    for r in rows:
        r["offset_s"] = (r["at"] - start).total_seconds() if start else None
    order = {"detection": 0, "enter": 1, "exit": 1}
    return [r for _, _, _, r in sorted((r["at"], order[r["kind"]], i, r) for i, r in enumerate(rows))]


def event_page(req: ConsoleRequest, *, shared: dict | None = None, status: int = 200) -> Response:
    """``GET /events/{event_id}``: player, verdict, detections, step timings, acknowledgement, links, clip
    request. A view is audited (``event.view``)."""
    doc = _event(req)
    event_id = req.params["event_id"]
    detail: m.EventDetail = access.api(req, events_api.get_event, params={"event_id": event_id})
    zone = tenant_zone(req.user.tenant_id)
    cam = camera_meta(req.user.tenant_id, [detail.camera_id or ""], default_zone=zone).get(detail.camera_id or "")
    st = video_link.state(req.user.tenant_id, event_id, doc, now=req.now)
    link_list = access.api(req, links_api.list_links, params={"event_id": event_id}).links
    if shared is None:
        audit.record(req.user.tenant_id, actor=req.user.actor, action="event.view", target_kind="event",
                     target_id=event_id, details={"camera_id": str(detail.camera_id or "")}, now=req.now)
    return req.page("event.html", status=status, ev=detail, doc=doc, st=st, camera=cam,
                    zone=cam.time_zone if cam else zone, steps=steps(doc), timeline=timeline(doc),
                    links=link_list, shared=shared, share_ttls=SHARE_TTLS, notice=req.query.get("notice", ""),
                    state_url=f"/events/{event_id}/state.json", playlist_url=f"/events/{event_id}/playlist.m3u8",
                    link_base=f"/events/{event_id}/")


def event_state(req: ConsoleRequest) -> Response:
    """``GET /events/{event_id}/state.json``: ``video_link.state`` of the event, for the player's polls."""
    import json

    doc = _event(req)
    st = video_link.state(req.user.tenant_id, req.params["event_id"], doc, now=req.now)
    return json.dumps(st), 200, {"Content-Type": "application/json"}


def event_playlist(req: ConsoleRequest) -> Response:
    """``GET /events/{event_id}/playlist.m3u8``: the HLS playlist of the event's chain (``video_link``), each
    segment a signed URL of at most 60 s; 404 for an event without segments."""
    doc = _event(req)
    if not video_link.has_segments(doc):
        raise not_found()
    parts, complete = video_link.chain(req.user.tenant_id, req.params["event_id"], doc)
    body = video_link.playlist_text(parts, complete, ttl=video_link.segment_url_ttl_seconds(), now=req.now)
    return body, 200, {"Content-Type": video_link.PLAYLIST_TYPE}


def event_download(req: ConsoleRequest) -> Response:
    """``GET /events/{event_id}/download/{n}``: ``302`` to a freshly signed download URL of the chain's
    ``n``-th clip (the player's download buttons); audited as ``event.download``."""
    doc = _event(req)
    n = req.params["n"]
    if not re.fullmatch(r"0|[1-9][0-9]{0,3}", n):
        raise not_found()
    parts = video_link.chain(req.user.tenant_id, req.params["event_id"], doc)[0] \
        if video_link.has_segments(doc) else []
    clips = video_link.clips_of(parts, doc)
    if int(n) >= len(clips):
        raise not_found()
    url = video_link.download_url(clips[int(n)], video_link.playback_url_ttl_seconds(), req.now)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="event.download", target_kind="event",
                 target_id=req.params["event_id"], details={"part": int(n)}, now=req.now)
    return "", 302, {"Location": url}


# ------------------------------------------------------------------------------------------ actions


def acknowledge(req: ConsoleRequest, event_id: str, comment: str) -> bool:
    """Acknowledges one alerted event the user may see (``tenant_api.events.ack_alert``), stores the comment
    and the user on the acknowledgement and audits it (``event.acknowledge``); returns whether this call
    acknowledged it (False: it already was; the first acknowledgement and its comment are kept).

    Raises:
        HttpError: 404 for an event the user may not see, or one that did not alert.
    """
    access.event(req.user, event_id)
    out: m.AckOut = access.api(req, events_api.ack_alert, params={"event_id": event_id}, act=True)
    if out.acknowledged_at != req.now:
        return False
    comment = comment.strip()[:MAX_COMMENT]
    pipeline.event_ref(req.user.tenant_id, event_id).update(
        {"ack.comment": comment, "ack.user_id": req.user.user_id, "ack.via": "console"})
    audit.record(req.user.tenant_id, actor=req.user.actor, action="event.acknowledge", target_kind="event",
                 target_id=event_id, details={"comment": comment}, now=req.now)
    return True


def event_ack(req: ConsoleRequest) -> Response:
    """``POST /events/{event_id}/ack`` (operator+): acknowledges with the form's ``comment``."""
    done = acknowledge(req, req.params["event_id"], req.field("comment"))
    return redirect(f"/events/{req.params['event_id']}?notice={'acknowledged' if done else 'already'}")


def event_share(req: ConsoleRequest) -> Response:
    """``POST /events/{event_id}/share`` (operator+): a new expiring, revocable video link for the named
    ``recipient`` (``vigint.links.create_link``), valid ``ttl_seconds`` (one of ``SHARE_TTLS``). The link is
    shown once on the answer for the user to copy (it is not e-mailed, not stored: only its hash is); audited
    (``event.share``: link id, recipient, lifetime; never the token)."""
    _event(req)
    event_id = req.params["event_id"]
    recipient = " ".join(req.field("recipient").split())[:MAX_RECIPIENT]
    ttl = req.field("ttl_seconds")
    if not recipient:
        raise HttpError(400, "recipient: who the link is for (a name or an e-mail address)")
    if ttl not in SHARE_TTLS:
        raise HttpError(400, "ttl_seconds: one of " + ", ".join(SHARE_TTLS.values()))
    tenant = pipeline.tenant_ref(req.user.tenant_id).get().to_dict() or {}
    token, lid, expires_at = links.create_link(tenant_id=req.user.tenant_id, event_id=event_id,
                                               recipient=recipient, ttl_seconds=int(ttl), now=req.now,
                                               keep_days=pipeline.retention_days(tenant))
    audit.record(req.user.tenant_id, actor=req.user.actor, action="event.share", target_kind="link",
                 target_id=lid, details={"event_id": event_id, "recipient": recipient, "ttl_seconds": int(ttl)},
                 now=req.now)
    log.info("console: link %s… of event %s/%s made by user %s", lid[:12], req.user.tenant_id, event_id,
             req.user.user_id)
    url = f"{config.settings().public_base_url}/v/{token}"
    return event_page(req, shared={"url": url, "recipient": recipient, "expires_at": expires_at}, status=201)


def link_revoke(req: ConsoleRequest) -> Response:
    """``POST /events/{event_id}/links/{link_id}/revoke`` (operator+): revokes one link of the event
    (``tenant_api.links.revoke_link``; audited ``link.revoke`` by ``vigint.links.revoke``)."""
    _event(req)
    event_id, lid = req.params["event_id"], req.params["link_id"]
    if lid not in {d["id"] for d in links.of_event(req.user.tenant_id, event_id)}:
        raise not_found()
    access.api(req, links_api.revoke_link, params={"link_id": lid}, act=True)
    return redirect(f"/events/{event_id}?notice=revoked")


def links_revoke_all(req: ConsoleRequest) -> Response:
    """``POST /events/{event_id}/links/revoke`` (operator+): revokes every link of the event."""
    _event(req)
    access.api(req, links_api.revoke_event_links, params={"event_id": req.params["event_id"]}, act=True)
    return redirect(f"/events/{req.params['event_id']}?notice=revoked")


def request_clip(req: ConsoleRequest) -> Response:
    """``POST /events/{event_id}/request-clip`` (operator+): a ``request_clip`` command to the event's device
    for its camera from ``before_s`` seconds before the event's start to ``after_s`` seconds after its end
    (``tenant_api.commands.create_command``: at most 600 s, at most 7 days old); audited
    (``event.request_clip``)."""
    doc = _event(req)
    event_id = req.params["event_id"]
    try:
        before, after = int(req.field("before_s", "10")), int(req.field("after_s", "10"))
    except ValueError:
        raise HttpError(400, "before_s, after_s: whole seconds") from None
    if not (0 <= before <= 600 and 0 <= after <= 600):
        raise HttpError(400, "before_s, after_s: 0 to 600 seconds")
    start, end = _utc(doc.get("start_time")), _utc(doc.get("end_time")) or _utc(doc.get("start_time"))
    if start is None or not doc.get("device_id") or not doc.get("camera_id"):
        raise HttpError(400, "this event has no camera time range to cut a clip from")
    body = m.CommandIn(type="request_clip", camera_id=doc["camera_id"], start=start - dt.timedelta(seconds=before),
                       end=end + dt.timedelta(seconds=after))
    out: m.CommandOut = access.api(req, commands_api.create_command, params={"device_id": doc["device_id"]},
                                   body=body, act=True)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="event.request_clip", target_kind="event",
                 target_id=event_id, details={"command_id": out.command_id, "device_id": doc["device_id"],
                                              "camera_id": doc["camera_id"], "start": out.params.get("start"),
                                              "end": out.params.get("end")}, now=req.now)
    return redirect(f"/events/{event_id}?notice=clip_requested")
