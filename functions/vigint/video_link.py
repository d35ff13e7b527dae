"""``video_link``: ``GET /v/{token}`` -> a page that plays the event clip.

* unknown token: 404 page; expired or revoked link: 410 page. Neither reveals anything about the event.
* valid: 200 page with the verdict, the snapshot and ``<video controls playsinline src=...>`` whose source
  is a fresh V4 signed GET URL valid ``VIGINT_PLAYBACK_URL_TTL_SECONDS``.

Every answer for a known link is recorded in ``links/{id}/access``. Neither the token nor a signed URL is
ever logged (only the first 12 hex digits of the link id). Responses carry ``Cache-Control: no-store``,
``Referrer-Policy: no-referrer`` and a Content-Security-Policy that allows media only from the bucket host.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit


from vigint import clients, config, links, pipeline, render, storage

log = logging.getLogger(__name__)

HtmlResponse = tuple[str, int, dict]


def _headers(nonce: str, media_origin: str | None = None) -> dict:
    media = media_origin or "'none'"
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src {media}; media-src {media}; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": csp,
        "X-Robots-Tag": "noindex, nofollow",
    }


def _error(status: int) -> HtmlResponse:
    nonce = secrets.token_urlsafe(16)
    if status == 404:
        heading, message = "Link not found", "This link is not valid. Check that you copied all of it."
    elif status == 410:
        heading, message = "Link expired", "This link has expired or was withdrawn. Ask your administrator for a new one."
    else:
        heading, message = "Not found", "There is nothing here."
    return render.render("link_error.html", heading=heading, message=message, nonce=nonce), status, _headers(nonce)


def _as_utc(t: Any) -> dt.datetime | None:
    if not isinstance(t, dt.datetime):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _log_access(link_ref, outcome: str, remote_addr: str | None, user_agent: str | None, now: dt.datetime) -> None:
    link_ref.collection("access").add(
        {"at": now, "remote_addr": (remote_addr or "")[:64], "user_agent": (user_agent or "")[:512], "outcome": outcome}
    )


def handle(*, method: str, path: str, remote_addr: str | None = None, user_agent: str | None = None,
           now: dt.datetime | None = None) -> HtmlResponse:
    """Serves one video-link request.

    Args:
        method: HTTP method (GET or HEAD; others 405).
        path: request path, ``/v/{token}``.
        remote_addr: client address, recorded in the access log.
        user_agent: client User-Agent, recorded (first 512 characters).
        now: current time (UTC), for tests.

    Returns:
        ``(html, status, headers)``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore unavailable (the platform answers 500).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    parts = path.strip("/").split("/")
    if len(parts) != 2 or parts[0] != "v" or not links.TOKEN_PATTERN.match(parts[1]):
        return _error(404)
    if method not in ("GET", "HEAD"):
        page, _, headers = _error(404)
        return page, 405, {**headers, "Allow": "GET, HEAD"}
    lid = links.link_id(parts[1])
    link_ref = clients.firestore().collection("links").document(lid)
    snap = link_ref.get()
    if not snap.exists:
        log.info("video_link: unknown link")
        return _error(404)
    link = snap.to_dict()
    expires_at = _as_utc(link.get("expires_at"))
    if link.get("revoked") or expires_at is None or expires_at <= now:
        outcome = "revoked" if link.get("revoked") else "expired"
        _log_access(link_ref, outcome, remote_addr, user_agent, now)
        log.info("video_link: link %s… %s", lid[:12], outcome)
        return _error(410)
    ev = pipeline.event_ref(link["tenant_id"], link["event_id"]).get()
    if not ev.exists:  # the event was deleted (retention): as good as expired
        _log_access(link_ref, "event_gone", remote_addr, user_agent, now)
        return _error(410)
    event = ev.to_dict()
    s = config.settings()
    ttl = s.playback_url_ttl_seconds
    clip_url = snapshot_url = None
    if (event.get("clip") or {}).get("object"):
        clip_url, _ = storage.signed_url(event["clip"]["object"], method="GET", ttl_seconds=ttl, now=now)
    if (event.get("snapshot") or {}).get("object"):
        snapshot_url, _ = storage.signed_url(event["snapshot"]["object"], method="GET", ttl_seconds=ttl, now=now)
    analysis = event.get("analysis") or {}
    level = int(analysis.get("threat_level", 0))
    nonce = secrets.token_urlsafe(16)
    page = render.render(
        "video_page.html",
        nonce=nonce,
        threat_word=render.THREAT_WORDS.get(level, f"Threat level {level}"),
        title=analysis.get("title") or f"Event on {event.get('camera_id', 'camera')}",
        summary=analysis.get("summary", ""),
        analysis_unavailable=analysis.get("status") == "error",
        camera_id=event.get("camera_id", ""),
        start_time=event.get("start_time"),
        labels=", ".join(event.get("labels") or []) or "nothing recognised",
        clip_url=clip_url,
        snapshot_url=snapshot_url,
        expires_at=expires_at,
        playback_for=render.duration_words(ttl),
    )
    _log_access(link_ref, "ok", remote_addr, user_agent, now)
    log.info("video_link: link %s… served event %s/%s", lid[:12], link["tenant_id"], link["event_id"])
    origin = urlsplit(s.storage_endpoint)
    return page, 200, _headers(nonce, f"{origin.scheme}://{origin.netloc}")
