"""Expiring video links: ``{VIGINT_PUBLIC_BASE_URL}/v/{token}``, stored only as ``links/{sha256(token)}``."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from vigint import clients

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def link_id(token: str) -> str:
    """The Firestore id of a token: lower-case hex SHA-256 of its ASCII bytes."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def create_link(*, tenant_id: str, event_id: str, recipient: str, ttl_seconds: int,
                now: dt.datetime | None = None, batch=None, keep_days: float | None = None
                ) -> tuple[str, str, dt.datetime]:
    """Creates ``links/{id}`` for one recipient.

    Args:
        ttl_seconds: the link works for this long from ``now``.
        batch: a Firestore ``WriteBatch`` to add the create to (the caller commits it); None: written now.
        keep_days: the document's ``expire_at`` (Firestore TTL backstop) is ``max(expires_at, now +
            keep_days)``, so the link and its access log go with the tenant's retention; None: no
            ``expire_at``.

    Returns:
        ``(token, link_id, expires_at)``; the token (``secrets.token_urlsafe(32)``, 43 characters) exists only
        in the return value and the e-mail: never log or store it.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    token = secrets.token_urlsafe(32)
    lid = link_id(token)
    expires_at = now + dt.timedelta(seconds=int(ttl_seconds))
    doc = {"tenant_id": tenant_id, "event_id": event_id, "recipient": recipient, "created_at": now,
           "expires_at": expires_at, "revoked": False}
    if keep_days is not None:
        doc["expire_at"] = max(expires_at, now + dt.timedelta(days=keep_days))
    ref = clients.firestore().collection("links").document(lid)
    if batch is not None:
        batch.create(ref, doc)
    else:
        ref.create(doc)
    return token, lid, expires_at


def revoke(link_id_: str) -> None:
    """Marks a link revoked (its page answers 410 from now on); unknown ids are ignored."""
    from google.api_core import exceptions as gexc

    try:
        clients.firestore().collection("links").document(link_id_).update({"revoked": True})
    except gexc.NotFound:
        pass
