"""Console sessions, kept server-side: ``console_sessions/{sha256(session id)}``.

The browser holds only the random session id (32 bytes, URL-safe base64) in an ``HttpOnly``, ``SameSite=Lax``
cookie (``Secure`` and ``__Host-``-prefixed when the console is served over HTTPS); Firestore holds its SHA-256,
so a copy of the database cannot be replayed as cookies. Document::

    {"tenant_id", "user_id", "method": "link" | "oidc", "created_at", "last_seen_at", "csrf_token",
     "expire_at": created_at + max (the absolute expiry, also the Firestore TTL field), "revoked_at": None,
     "ip", "user_agent" (first 200 characters)}

A session ends at ``expire_at`` (``VIGINT_CONSOLE_SESSION_MAX_S``, 7 days), after ``VIGINT_CONSOLE_SESSION_IDLE_S``
(12 h) without a request, or when revoked (sign-out, the user disabled). ``last_seen_at`` is written at most once
per ``TOUCH_EVERY_S`` per session, far below Firestore's sustained one write per second per document
(https://cloud.google.com/firestore/docs/best-practices#updates_to_a_single_document). A new id is made at every
sign-in (no fixation: an id the browser had before is never promoted).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from vigint import clients, config

COLLECTION = "console_sessions"
TOUCH_EVERY_S = 300
COOKIE_LOCAL = "vigint_session"
# A __Host- cookie must be Secure, have Path=/ and no Domain: it cannot be set by a sibling subdomain
# (https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis#name-the-__host-prefix).
COOKIE_SECURE = "__Host-vigint_session"


@dataclasses.dataclass(frozen=True)
class Session:
    """A live session: ``key`` is the SHA-256 (hex) of the cookie's id, the document's id."""

    key: str
    tenant_id: str
    user_id: str
    csrf_token: str
    created_at: dt.datetime
    last_seen_at: dt.datetime


def secure() -> bool:
    """Whether the console is served over HTTPS (cookies then ``Secure`` and ``__Host-``)."""
    return config.settings().console_base_url.startswith("https://")


def cookie_name() -> str:
    return COOKIE_SECURE if secure() else COOKIE_LOCAL


def cookie_header(session_id: str, max_age_s: int) -> str:
    """The ``Set-Cookie`` value that gives the browser ``session_id`` ("" with max-age 0 clears it)."""
    parts = [f"{cookie_name()}={session_id}", "Path=/", "HttpOnly", "SameSite=Lax", f"Max-Age={max_age_s}"]
    if secure():
        parts.append("Secure")
    return "; ".join(parts)


def key_of(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _col():
    return clients.firestore().collection(COLLECTION)


def create(tenant_id: str, user_id: str, *, method: str, ip: str | None, user_agent: str | None,
           now: dt.datetime) -> tuple[str, Session]:
    """A new session; returns ``(cookie id, session)``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    s = config.settings()
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    key = key_of(session_id)
    _col().document(key).create({
        "tenant_id": tenant_id, "user_id": user_id, "method": method, "created_at": now, "last_seen_at": now,
        "csrf_token": csrf, "expire_at": now + dt.timedelta(seconds=s.console_session_max_s), "revoked_at": None,
        "ip": (ip or "")[:64], "user_agent": (user_agent or "")[:200]})
    return session_id, Session(key, tenant_id, user_id, csrf, now, now)


def lookup(session_id: str | None, *, now: dt.datetime) -> Session | None:
    """The live session of a cookie id, or None (unknown, revoked, idle too long, past its absolute expiry).
    Touches ``last_seen_at`` when it is older than ``TOUCH_EVERY_S``."""
    if not session_id or len(session_id) > 100:
        return None
    key = key_of(session_id)
    ref = _col().document(key)
    snap = ref.get()
    if not snap.exists:
        return None
    d = snap.to_dict() or {}
    s = config.settings()
    last = d.get("last_seen_at")
    if d.get("revoked_at") or not last or d.get("expire_at") is None or now >= d["expire_at"]:
        return None
    if (now - last).total_seconds() >= s.console_session_idle_s:
        return None
    if (now - last).total_seconds() >= TOUCH_EVERY_S:
        ref.update({"last_seen_at": now})
        last = now
    return Session(key, d["tenant_id"], d["user_id"], d["csrf_token"], d["created_at"], last)


def revoke(key: str, *, now: dt.datetime) -> None:
    """Ends a session (by its key); a session that does not exist is left alone."""
    ref = _col().document(key)
    if ref.get().exists:
        ref.update({"revoked_at": now})
