"""``video_link``: the page of an alert e-mail's link, which plays the event live while it is recorded.

Routes (docs/contracts.md, "Event lifecycle (schema version 2)", ``video_link``):

* ``GET /v/{token}``: the page (verdict so far, snapshot, camera, first seen, recording or ended, ``<video>``).
  An event with HLS segments (schema version 2) is played by ``static/player.js`` from the playlist below
  (hls.js where the browser lacks native HLS, Safari's own HLS otherwise); an old event with only ``clip.mp4``
  gets ``<video src>`` of a signed clip URL as before.
* ``GET /v/{token}/playlist.m3u8``: HLS media playlist (version 3, ``EXT-X-PLAYLIST-TYPE:EVENT``) of the
  event's segments and, once it has ended, of the events that continue it (a split at ``max_length_s``, after
  ``EXT-X-DISCONTINUITY``), each a V4 signed GET URL valid ``VIGINT_SEGMENT_URL_TTL_SECONDS`` (60 s); it
  stops at the first segment not yet stored and ends (``EXT-X-ENDLIST``) once the chain's last event has
  ended with every one of its ``segment_count`` segments stored.
* ``GET /v/{token}/state.json``: verdict and recording state, polled by the page every 2.5 s while recording.
* ``GET /v/{token}/download/{n}``: ``302`` to a freshly signed download URL (``Content-Disposition:
  attachment``) of the clip of the chain's ``n``-th event; the page's download buttons point here, so they
  never go stale and a revoked link's download answers 410 like the rest.
* ``GET /v/static/{name}``: the vendored hls.js and the page script (allow-listed names, cached a year: the
  page asks for them with a ``?v=<content hash>`` query).

Unknown token: 404; expired or revoked link (or its event deleted): 410, for the page, the playlist, the
state and the downloads alike, byte for byte the same answer for a revoked and an expired link (and no error
answer says anything about the event). Access log ``links/{id}/access``: one document per page view and per
download (``outcome: "ok"``), and one per refused request (``"revoked"``, ``"expired"``, ``"event_gone"``),
at most one per link, route kind and outcome every ``DENIED_LOG_INTERVAL_S`` per instance (a page left open
or a script hammering a dead link must not turn into a write per request); successful playlist and state
polls write nothing (the page polls every few seconds). Neither the token nor a signed URL is ever logged
(only the first 12 hex digits of the link id).

Revocation takes effect within a minute: every request reads the link first, and every signed media URL
this module hands out has at most ``MAX_URL_TTL_S`` (60 s) left, whatever the settings say (the cache
below reuses a URL only while it has at least half its lifetime left, so the page's URLs have 30..60 s);
``static/player.js`` renews them before they run out (``segment_url_ttl_seconds``, default 60 s, and
``playback_url_ttl_seconds``, default 60 s).

Signed URLs are cached per instance and reused while at least half their lifetime is left, so a playlist
or state poll signs only what is new: in Google Cloud every signature is one IAM ``signBlob`` call,
which has a per-project quota (https://cloud.google.com/iam/quotas) and costs a round trip.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vigint import audit, clients, config, links, pipeline, render, storage

log = logging.getLogger(__name__)

Response = tuple[str | bytes, int, dict]

# A split chain longer than this many events is cut (with EXT-X-ENDLIST): 2 hours at max_length_s = 60 s.
# Every playlist poll reads each event of the chain and its segment documents.
MAX_CHAIN_EVENTS = 120
# Target duration of a playlist that has no segment yet (the contract's longest segment, 4 s).
DEFAULT_TARGET_DURATION_S = 4
STATIC_DIR = Path(__file__).parent / "static"
# Name under /v/static/ -> (file under static/, Content-Type). Nothing else in static/ is served.
STATIC_FILES = {
    "hls.light.min.js": ("hls.light.min.js", "text/javascript; charset=utf-8"),
    "hls.js.LICENSE": ("vendor/hls.js.LICENSE", "text/plain; charset=utf-8"),  # Apache-2.0 travels with it
    "player.js": ("player.js", "text/javascript; charset=utf-8"),
    "player.css": ("player.css", "text/css; charset=utf-8"),
}
STATIC_MAX_AGE_S = 365 * 24 * 3600
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_URL_CACHE_SIZE = 4096  # signed URLs kept per instance (about 1 MB)


# A signed URL lives at most this long (seconds), so a revoked link's media stops within a minute (issue 14).
MAX_URL_TTL_S = 60
# Refused requests of one link, route kind and outcome logged at most once per this many seconds per instance.
DENIED_LOG_INTERVAL_S = 60
_DENIED_LOG_SIZE = 4096


def segment_url_ttl_seconds() -> int:
    """Lifetime (s) of a playlist's segment URLs: ``VIGINT_SEGMENT_URL_TTL_SECONDS`` (default 60 s), at most
    ``MAX_URL_TTL_S``."""
    return min(config.settings().segment_url_ttl_seconds, MAX_URL_TTL_S)


def playback_url_ttl_seconds() -> int:
    """Lifetime (s) of the page's snapshot, clip and download URLs: ``VIGINT_PLAYBACK_URL_TTL_SECONDS``
    (default 60 s), at most ``MAX_URL_TTL_S``."""
    return min(config.settings().playback_url_ttl_seconds, MAX_URL_TTL_S)


# ---------------------------------------------------------------- responses


def _security_headers(content_type: str) -> dict:
    return {
        "Content-Type": content_type,
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex, nofollow",
    }


def _page_headers(nonce: str, bucket_origin: str | None = None) -> dict:
    """HTML headers. ``bucket_origin``: where the page's media, snapshot and (by XHR) segments come from."""
    bucket = bucket_origin or "'none'"
    media = f"{bucket_origin} 'self' blob:" if bucket_origin else "'none'"
    connect = f"'self' {bucket_origin}" if bucket_origin else "'self'"
    csp = (f"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src {bucket}; "
           f"media-src {media}; connect-src {connect}; worker-src blob:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {**_security_headers("text/html; charset=utf-8"), "X-Frame-Options": "DENY",
            "Content-Security-Policy": csp}


# The error page's only style, allowed by its hash (no nonce): the answer is the same bytes for every link, so
# a revoked and an expired link cannot be told apart (https://www.w3.org/TR/CSP3/#grammardef-hash-source).
_ERROR_STYLE = "body { font-family: Arial, Helvetica, sans-serif; max-width: 640px; margin: 0 auto; padding: 16px; }"
_ERROR_STYLE_HASH = base64.b64encode(hashlib.sha256(_ERROR_STYLE.encode()).digest()).decode()


def _error_page(status: int) -> Response:
    if status == 404:
        heading, message = "Link not found", "This link is not valid. Check that you copied all of it."
    elif status == 410:
        heading, message = ("Link expired",
                            "This link has expired or was withdrawn. Ask your administrator for a new one.")
    else:
        heading, message = "Not found", "There is nothing here."
    page = render.render("link_error.html", heading=heading, message=message, style=_ERROR_STYLE)
    csp = (f"default-src 'none'; style-src 'sha256-{_ERROR_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return page, status, {**_security_headers("text/html; charset=utf-8"), "X-Frame-Options": "DENY",
                          "Content-Security-Policy": csp}


def _error(status: int, kind: str) -> Response:
    """The error answer of one route kind (``page``, ``playlist``, ``state``, ``download``); the same bytes
    and headers for every link (no nonce, no time)."""
    if kind in ("page", "download"):
        return _error_page(status)
    word = {404: "not found", 405: "method not allowed", 410: "link expired"}.get(status, "error")
    if kind == "state":
        return json.dumps({"error": word}), status, _security_headers("application/json")
    return word + "\n", status, _security_headers("text/plain; charset=utf-8")


def _bucket_origin() -> str:
    origin = urlsplit(config.settings().storage_endpoint)
    return f"{origin.scheme}://{origin.netloc}"


# ---------------------------------------------------------------- static files


@functools.lru_cache(maxsize=len(STATIC_FILES))
def _static_bytes(name: str) -> bytes:
    return (STATIC_DIR / STATIC_FILES[name][0]).read_bytes()


def static_version(name: str) -> str:
    """First 16 hex digits of the SHA-256 of the static file served as ``name``: the page's cache-busting ``?v=`` query."""
    return hashlib.sha256(_static_bytes(name)).hexdigest()[:16]


def _static(name: str) -> Response:
    if name not in STATIC_FILES:
        return "not found\n", 404, _security_headers("text/plain; charset=utf-8")
    headers = {
        "Content-Type": STATIC_FILES[name][1],
        "Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}, immutable",
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{static_version(name)}"',
    }
    return _static_bytes(name), 200, headers


# ---------------------------------------------------------------- the event and its split chain


@dataclasses.dataclass
class Part:
    """One event of the chain as the playlist sees it.

    Attributes:
        event_id: the event.
        event: its Firestore document.
        segments: segment documents ``0..n-1`` stored so far, contiguous (the list stops at the first gap).
        complete: the event has ended and all its ``segment_count`` segments are in ``segments``.
    """

    event_id: str
    event: dict
    segments: list[dict]
    complete: bool


def _segment_ok(doc: dict, index: int, prefix: str) -> bool:
    """A segment document the playlist can use: its own index, object and a positive duration."""
    duration = doc.get("duration_s")
    return (doc.get("index") == index and doc.get("object") == f"{prefix}segments/{index:05d}.ts"
            and isinstance(duration, (int, float)) and not isinstance(duration, bool)
            and 0 < duration <= 60 and math.isfinite(duration))


def _contiguous_segments(tenant_id: str, event_id: str, event: dict) -> list[dict]:
    """The event's segment documents from index 0 up to the first one missing (or malformed)."""
    from vigint.schema import event_prefix

    prefix = event_prefix(tenant_id, str(event.get("device_id", "")), event_id)
    by_index = {}
    # Documents are named {index:05d}; a collection read needs no index beyond Firestore's automatic ones.
    for snap in pipeline.event_ref(tenant_id, event_id).collection("segments").stream():
        doc = snap.to_dict() or {}
        if isinstance(doc.get("index"), int):
            by_index[doc["index"]] = doc
    out = []
    while len(out) in by_index:
        doc = by_index[len(out)]
        if not _segment_ok(doc, len(out), prefix):
            log.warning("video_link: segment %d of event %s/%s is malformed; the playlist stops there",
                        len(out), tenant_id, event_id)
            break
        out.append(doc)
    return out


def has_segments(event: dict) -> bool:
    """Whether the page plays the event through HLS: a lifecycle (schema v2) event that may have segments."""
    if int(event.get("schema_version") or 1) < 2:
        return False
    return not (event.get("ended") and event.get("segment_count") == 0)


def chain(tenant_id: str, event_id: str, event: dict) -> tuple[list[Part], bool]:
    """The link's event followed by the events that continue it, as far as they are playable.

    Args:
        tenant_id: the tenant.
        event_id: the link's event.
        event: its Firestore document.

    Returns:
        ``(parts, complete)``: the events in order, each with its contiguous segments; the next event is
        included only after one that is complete. ``complete`` is True when the last part is complete and is
        not continued (or the chain reached ``MAX_CHAIN_EVENTS`` or loops).
    """
    parts: list[Part] = []
    seen = {event_id}
    while True:
        segments = _contiguous_segments(tenant_id, event_id, event)
        count = event.get("segment_count")
        complete = bool(event.get("ended")) and isinstance(count, int) and len(segments) >= count
        if complete:
            segments = segments[:count]
        parts.append(Part(event_id, event, segments, complete))
        nxt = event.get("continued_by")
        if not complete or not nxt:
            return parts, complete
        if nxt in seen or len(parts) >= MAX_CHAIN_EVENTS:
            log.warning("video_link: the chain of %s/%s is cut after %d events", tenant_id, parts[0].event_id,
                        len(parts))
            return parts, True
        snap = pipeline.event_ref(tenant_id, nxt).get()
        if not snap.exists:  # deleted by retention: the chain ends here
            return parts, True
        seen.add(nxt)
        event_id, event = nxt, snap.to_dict() or {}


# ---------------------------------------------------------------- signed URLs


_url_cache: collections.OrderedDict[tuple[str, int, str | None], tuple[str, dt.datetime, dt.datetime]] = \
    collections.OrderedDict()
_url_lock = threading.Lock()


def signed_get(object_name: str, ttl: int, now: dt.datetime, disposition: str | None = None) -> str:
    """A signed GET URL of one object with at least half of ``ttl`` left and never more than
    ``MAX_URL_TTL_S``: a cached one, or a new one (``ttl`` in seconds)."""
    ttl = min(int(ttl), MAX_URL_TTL_S)
    key = (object_name, ttl, disposition)
    with _url_lock:
        hit = _url_cache.get(key)
        if hit and hit[1] <= now and (hit[2] - now).total_seconds() >= ttl / 2:
            _url_cache.move_to_end(key)
            return hit[0]
    url, expires_at = storage.signed_url(object_name, method="GET", ttl_seconds=ttl, now=now,
                                         response_disposition=disposition)
    with _url_lock:
        _url_cache[key] = (url, now, expires_at)
        while len(_url_cache) > _URL_CACHE_SIZE:
            _url_cache.popitem(last=False)
    return url


def playlist_text(parts: list[Part], complete: bool, *, ttl: int, now: dt.datetime) -> str:
    """The HLS media playlist (RFC 8216, version 3) of ``parts``.

    ``#EXT-X-TARGETDURATION`` is the longest segment rounded up (RFC 8216 4.3.3.1), ``#EXTINF`` each
    segment's ``duration_s`` (3 decimals), a ``#EXT-X-DISCONTINUITY`` starts every event after the first (its
    timestamps start again), and ``#EXT-X-ENDLIST`` closes a ``complete`` chain.
    """
    durations = [s["duration_s"] for p in parts for s in p.segments]
    target = math.ceil(max(durations)) if durations else DEFAULT_TARGET_DURATION_S
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0"]
    for n, part in enumerate(parts):
        if n and part.segments:
            lines.append("#EXT-X-DISCONTINUITY")
        for seg in part.segments:
            lines.append(f"#EXTINF:{seg['duration_s']:.3f},")
            lines.append(signed_get(seg["object"], ttl, now))
    if complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- page and state


def _as_utc(t: Any) -> dt.datetime | None:
    if isinstance(t, str):
        try:
            t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(t, dt.datetime):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _rfc3339(t: dt.datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _verdict(event: dict) -> dict:
    """Title, summary, level and which verdict it is (``full`` > ``first`` > ``detections``)."""
    analysis = event.get("analysis") or {}
    try:
        level = max(0, min(3, int(analysis.get("threat_level", 0))))
    except (TypeError, ValueError):
        level = 0
    verdicts = event.get("verdicts") or {}
    kind = next((k for k in ("full", "first", "detections") if verdicts.get(k)), None)
    if kind is None and analysis:
        kind = "full" if analysis.get("source") == "gemini" else "detections"
    labels = [str(label) for label in (event.get("labels") or [])]
    return {
        "title": analysis.get("title") or f"Event on {event.get('camera_id', 'camera')}",
        "summary": analysis.get("summary", ""),
        "threat_level": level,
        "threat_word": render.THREAT_WORDS.get(level, f"Threat level {level}"),
        "verdict": kind,
        "analysis_status": analysis.get("status"),
        "labels": labels,
    }


def _verdict_note(verdict: dict, ended: bool) -> str:
    if verdict["analysis_status"] == "error":
        return "AI analysis unavailable: based on the camera's own detections."
    if verdict["verdict"] == "full":
        return "AI review of the whole event."
    if verdict["verdict"] == "first":
        return "AI review of the first frames; the review of the whole event follows" + (
            "." if ended else " once it ends.")
    if verdict["analysis_status"] in ("detections_only", "not_analyzed"):
        return "Based on the camera's own detections."
    return "Based on the camera's own detections; the AI review follows in a few seconds."


def _clip_filename(event: dict) -> str:
    start = _as_utc(event.get("start_time"))
    camera = re.sub(r"[^a-z0-9-]", "", str(event.get("camera_id", "camera")))[:63] or "camera"
    return f"vigint-{camera}-{start:%Y%m%d-%H%M%S}.mp4" if start else f"vigint-{camera}.mp4"


def clips_of(parts: list[Part], event: dict) -> list[dict]:
    """The events of the chain that have a final clip (the link's event alone without a chain), in order."""
    return [p.event for p in (parts or [Part("", event, [], False)]) if (p.event.get("clip") or {}).get("object")]


def download_url(event: dict, ttl: int, now: dt.datetime) -> str:
    return signed_get(event["clip"]["object"], ttl, now, f'attachment; filename="{_clip_filename(event)}"')


def _downloads(parts: list[Part], event: dict, ttl: int, now: dt.datetime) -> list[dict]:
    """Signed download URLs of the final clips there are (one per event of the chain); ``path``: the page's
    own route for the same download (``download/{n}``, relative to ``/v/{token}/``)."""
    return [{"url": download_url(ev, ttl, now), "path": f"download/{n}", "bytes": ev["clip"].get("bytes"),
             "duration_s": ev["clip"].get("duration_s")} for n, ev in enumerate(clips_of(parts, event))]


def state(tenant_id: str, event_id: str, event: dict, *, now: dt.datetime) -> dict:
    """What the page shows and refreshes: verdict, recording state, snapshot and download URLs.

    Returns:
        ``{"mode": "hls"|"mp4"|"none", "ended": bool (the chain's last event has ended), "complete": bool
        (the playlist has its end), "title", "summary", "threat_level": 0..3, "threat_word", "verdict":
        "full"|"first"|"detections"|None, "verdict_note", "analysis_status", "labels": [str], "camera_id",
        "first_seen": RFC 3339 | None, "duration_s": float (seconds recorded: segments, or the clip),
        "segments": int (in the playlist), "parts": int (events of the chain), "snapshot_url", "snapshot_sha256",
        "download_url" (signed clip URL of the link's event once it exists, else None), "downloads": [{"url",
        "path", "bytes", "duration_s"}] (every clip of the chain; ``path`` the page's ``download/{n}``
        route), "clip_url" (mode ``mp4``: the signed clip URL the page plays, else None), "continued_by": str |
        None, "integrity_note": str ("" unless a stored object of the chain differs from what the device
        claimed: ``render.integrity_words``)}``. Every signed URL has at most ``playback_url_ttl_seconds()``
        (<= 60 s) left.
    """
    ttl = playback_url_ttl_seconds()
    hls = has_segments(event)
    parts, complete = chain(tenant_id, event_id, event) if hls else ([], True)
    last = parts[-1].event if parts else event
    ended = bool(last.get("ended")) if hls else True
    segments = sum(len(p.segments) for p in parts)
    if hls:
        duration = sum(s["duration_s"] for p in parts for s in p.segments)
    else:
        duration = (event.get("clip") or {}).get("duration_s")
        if duration is None:
            start, end = _as_utc(event.get("start_time")), _as_utc(event.get("end_time"))
            duration = (end - start).total_seconds() if start and end else 0.0
    snapshot = event.get("snapshot") or {}
    snapshot_url = None
    if snapshot.get("object"):
        snapshot_url = signed_get(snapshot["object"], ttl, now)
    downloads = _downloads(parts, event, ttl, now)
    own_clip = (event.get("clip") or {}).get("object")
    verdict = _verdict(event)
    return {
        "mode": "hls" if hls else ("mp4" if own_clip else "none"),
        "ended": ended,
        "complete": complete,
        **verdict,
        "verdict_note": _verdict_note(verdict, ended),
        "camera_id": event.get("camera_id", ""),
        "first_seen": _rfc3339(_as_utc(event.get("first_seen")) or _as_utc(event.get("start_time"))),
        "duration_s": round(float(duration or 0.0), 3),
        "segments": segments,
        "parts": len(parts),
        "snapshot_url": snapshot_url,
        "snapshot_sha256": snapshot.get("sha256"),
        "download_url": downloads[0]["url"] if own_clip and downloads else None,
        "downloads": downloads,
        "clip_url": signed_get(own_clip, ttl, now) if own_clip and not hls else None,
        "continued_by": event.get("continued_by"),
        # Ingest's check of the stored objects against the device's claims (every part of the chain).
        "integrity_note": "; ".join(w for w in (render.integrity_words(p.event)
                                                for p in parts or [Part(event_id, event, [], True)]) if w),
    }


def _page(token: str, link: dict, event: dict, st: dict, *, trailing_slash: bool, now: dt.datetime) -> Response:
    nonce = secrets.token_urlsafe(16)
    clip_url = st["clip_url"]
    up = "../" if trailing_slash else ""  # the page's URLs are relative: behind .../video-link/v/{token}
    page = render.render(
        "video_page.html",
        nonce=nonce,
        st=st,
        clip_url=clip_url,
        first_seen=_as_utc(event.get("first_seen")) or _as_utc(event.get("start_time")),
        duration_words=render.duration_words(round(st["duration_s"])),
        labels_words=", ".join(st["labels"]) or "nothing recognised",
        expires_at=_as_utc(link.get("expires_at")),
        playback_for=render.duration_words(playback_url_ttl_seconds()),
        playlist_url=f"{up}{token}/playlist.m3u8",
        link_base=f"{up}{token}/",
        state_url=f"{up}{token}/state.json",
        static=lambda name: f"{up}static/{name}?v={static_version(name)}",
    )
    return page, 200, _page_headers(nonce, _bucket_origin())


# ---------------------------------------------------------------- routing


def _log_access(link_ref, outcome: str, remote_addr: str | None, user_agent: str | None, now: dt.datetime,
                kind: str = "page") -> None:
    """Adds one ``links/{id}/access`` document ``{at, outcome, kind, remote_addr (64 chars), user_agent (512)}``."""
    link_ref.collection("access").add(
        {"at": now, "remote_addr": (remote_addr or "")[:64], "user_agent": (user_agent or "")[:512],
         "outcome": outcome, "kind": kind}
    )


def _audit_view(link: dict, lid: str, kind: str, remote_addr: str | None, now: dt.datetime) -> None:
    """An ``event.view`` entry in the tenant's audit log for a page or download served through a shared link
    (issue 11: every clip view, console or shared link, is audited); the actor is the link's recipient."""
    audit.record(link["tenant_id"], actor={"kind": "link", "id": lid[:16], "name": str(link.get("recipient") or "")},
                 action="event.view", target_kind="event", target_id=link["event_id"],
                 details={"via": "link", "kind": kind, "ip": (remote_addr or "")[:64]}, now=now)


_denied_logged: collections.OrderedDict[tuple[str, str, str], dt.datetime] = collections.OrderedDict()


def _log_denied(link_ref, outcome: str, kind: str, remote_addr: str | None, user_agent: str | None,
                now: dt.datetime) -> None:
    """``_log_access`` of a refused request, at most once per link, kind and outcome every
    ``DENIED_LOG_INTERVAL_S`` in this instance."""
    key = (link_ref.id, kind, outcome)
    with _url_lock:
        last = _denied_logged.get(key)
        if last is not None and dt.timedelta(0) <= now - last < dt.timedelta(seconds=DENIED_LOG_INTERVAL_S):
            return
        _denied_logged[key] = now
        _denied_logged.move_to_end(key)
        while len(_denied_logged) > _DENIED_LOG_SIZE:
            _denied_logged.popitem(last=False)
    _log_access(link_ref, outcome, remote_addr, user_agent, now, kind)


_SUB_ROUTES = {"playlist.m3u8": "playlist", "state.json": "state"}
_DOWNLOAD_INDEX = re.compile(r"^(0|[1-9][0-9]{0,3})$")


def _kind_of(parts: list[str]) -> str | None:
    """The route kind of ``["v", token, ...]``: ``page``, ``playlist``, ``state``, ``download`` or None."""
    if len(parts) == 2:
        return "page"
    if len(parts) == 3:
        return _SUB_ROUTES.get(parts[2])
    if len(parts) == 4 and parts[2] == "download" and _DOWNLOAD_INDEX.match(parts[3]):
        return "download"
    return None


def handle(*, method: str, path: str, remote_addr: str | None = None, user_agent: str | None = None,
           now: dt.datetime | None = None) -> Response:
    """Serves one video-link request.

    Args:
        method: HTTP method (GET or HEAD; others 405).
        path: request path: ``/v/{token}``, ``/v/{token}/playlist.m3u8``, ``/v/{token}/state.json``,
            ``/v/{token}/download/{n}`` or ``/v/static/{name}``.
        remote_addr: client address, recorded in the access log.
        user_agent: client User-Agent, recorded (first 512 characters).
        now: current time (UTC), for tests.

    Returns:
        ``(body, status, headers)``; body is ``str`` (HTML, playlist, JSON) or ``bytes`` (static files); a
        download is ``302`` with ``Location`` the signed URL.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore unavailable (the platform answers 500).
        vigint.storage.SigningError: no credentials to sign URLs with.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    parts = path.split("/")[1:] if path.startswith("/") else path.split("/")
    trailing_slash = len(parts) == 3 and parts[2] == ""
    if trailing_slash:
        parts = parts[:2]
    if len(parts) == 3 and parts[:2] == ["v", "static"]:
        if method not in ("GET", "HEAD"):
            return "method not allowed\n", 405, {**_security_headers("text/plain; charset=utf-8"), "Allow": "GET, HEAD"}
        return _static(parts[2])
    kind = _kind_of(parts) if len(parts) >= 2 else None
    if kind is None or parts[0] != "v" or not links.TOKEN_PATTERN.match(parts[1]):
        return _error(404, kind or "page")
    if method not in ("GET", "HEAD"):
        body, _, headers = _error(405, kind)
        return body, 405, {**headers, "Allow": "GET, HEAD"}
    token = parts[1]
    lid = links.link_id(token)
    link_ref = clients.firestore().collection("links").document(lid)
    snap = link_ref.get()
    if not snap.exists:
        log.info("video_link: unknown link (%s)", kind)
        return _error(404, kind)
    link = snap.to_dict()
    outcome = links.state_of(link, now)
    if outcome != "active":
        _log_denied(link_ref, outcome, kind, remote_addr, user_agent, now)
        log.info("video_link: link %s… %s (%s)", lid[:12], outcome, kind)
        return _error(410, kind)
    tenant_id, event_id = link["tenant_id"], link["event_id"]
    ev = pipeline.event_ref(tenant_id, event_id).get()
    if not ev.exists:  # the event was deleted (retention): as good as expired
        _log_denied(link_ref, "event_gone", kind, remote_addr, user_agent, now)
        return _error(410, kind)
    event = ev.to_dict() or {}

    if kind == "playlist":
        if not has_segments(event):
            return _error(404, kind)
        chain_parts, complete = chain(tenant_id, event_id, event)
        body = playlist_text(chain_parts, complete, ttl=segment_url_ttl_seconds(), now=now)
        return body, 200, _security_headers(PLAYLIST_TYPE)
    if kind == "download":
        chain_parts = chain(tenant_id, event_id, event)[0] if has_segments(event) else []
        clips = clips_of(chain_parts, event)
        n = int(parts[3])
        if n >= len(clips):
            return _error(404, kind)
        url = download_url(clips[n], playback_url_ttl_seconds(), now)
        _log_access(link_ref, "ok", remote_addr, user_agent, now, kind)
        _audit_view(link, lid, kind, remote_addr, now)
        log.info("video_link: link %s… download %d of event %s/%s", lid[:12], n, tenant_id, event_id)
        return "", 302, {**_security_headers("text/plain; charset=utf-8"), "Location": url}
    st = state(tenant_id, event_id, event, now=now)
    if kind == "state":
        return json.dumps(st), 200, _security_headers("application/json")
    page = _page(token, link, event, st, trailing_slash=trailing_slash, now=now)
    _log_access(link_ref, "ok", remote_addr, user_agent, now)
    _audit_view(link, lid, "page", remote_addr, now)
    log.info("video_link: link %s… served event %s/%s", lid[:12], tenant_id, event_id)
    return page
