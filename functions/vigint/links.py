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


LINK_ID_PATTERN = r"^[0-9a-f]{64}$"  # link_id(): lower-case hex SHA-256
SYSTEM_ACTOR = {"kind": "system", "id": "", "name": "vigint"}


def state_of(link: dict, now: dt.datetime) -> str:
    """``"revoked"`` (whatever its expiry), ``"expired"`` (``expires_at`` at or before ``now``, or missing) or
    ``"active"``: what ``video_link`` answers (410 for the first two, alike)."""
    if link.get("revoked"):
        return "revoked"
    expires_at = link.get("expires_at")
    if not isinstance(expires_at, dt.datetime):
        return "expired"
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.timezone.utc)
    return "active" if expires_at > now else "expired"


def revoke(link_id_: str, *, by: dict | None = None, now: dt.datetime | None = None,
           tenant_id: str | None = None) -> dict | None:
    """Marks a link revoked: its page, state, playlist and downloads answer 410 from the next request on, and
    the signed media URLs it handed out before end within ``VIGINT_PLAYBACK_URL_TTL_SECONDS`` /
    ``VIGINT_SEGMENT_URL_TTL_SECONDS`` (60 s each by default).

    One transaction: ``revoked: true``, ``revoked_at`` (``now``, UTC) and ``revoked_by`` (an
    ``audit.actor_of`` dict; the system when ``by`` is None) are written only the first time, with an audit
    entry ``link.revoke`` in the link's tenant (target the link id, details the event id and recipient). A
    link already revoked is left as it is (idempotent: no second audit entry).

    Args:
        link_id_: the link id (``link_id(token)``).
        by: who revokes (``audit.actor_of(principal)`` or ``{"kind": "cli", ...}``).
        now: revocation time (UTC); default the current time.
        tenant_id: when given, a link of another tenant is treated as unknown (tenant isolation).

    Returns:
        The link document after the call (with ``"id"``, and ``"revoked_now"``: whether this call revoked it),
        or None for an unknown link (or another tenant's).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    from google.cloud import firestore as fs

    from vigint import audit

    now = now or dt.datetime.now(dt.timezone.utc)
    db = clients.firestore()
    ref = db.collection("links").document(link_id_)

    @fs.transactional
    def run(tx):
        snap = ref.get(transaction=tx)
        if not snap.exists:
            return None
        doc = snap.to_dict() or {}
        if tenant_id is not None and doc.get("tenant_id") != tenant_id:
            return None
        revoked_now = not doc.get("revoked")
        if revoked_now:
            actor = dict(by or SYSTEM_ACTOR)
            update = {"revoked": True, "revoked_at": now, "revoked_by": actor}
            tx.update(ref, update)
            doc.update(update)
            if doc.get("tenant_id"):
                audit.record(str(doc["tenant_id"]), actor=actor, action="link.revoke", target_kind="link",
                             target_id=link_id_, details={"event_id": str(doc.get("event_id", "")),
                                                          "recipient": str(doc.get("recipient", ""))},
                             now=now, batch=tx)
        return {"id": link_id_, **doc, "revoked_now": revoked_now}

    return run(db.transaction())


def of_event(tenant_id: str, event_id: str) -> list[dict]:
    """The links of one event of one tenant, oldest first (``created_at``, then id), each with its ``"id"``.

    Two equality filters and an order on ``created_at``: in Google Cloud this needs the composite index
    ``links_by_tenant_event`` (tenant_id, event_id, created_at) of ``terraform/firestore.tf``
    (https://cloud.google.com/firestore/docs/query-data/index-overview#composite_indexes); the emulator
    needs none. An event has one link per recipient and alert e-mail (a few dozen at most).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    from google.cloud import firestore as fs

    q = (clients.firestore().collection("links").where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
         .where(filter=fs.FieldFilter("event_id", "==", event_id)).order_by("created_at"))
    return [{"id": snap.id, **(snap.to_dict() or {})} for snap in q.stream()]


def accesses(link_id_: str, *, recent: int = 20) -> dict:
    """The access log of a link (``links/{id}/access``, written by ``video_link``).

    Returns:
        ``{"count": int (every entry), "first_at": datetime | None, "last_at": datetime | None, "recent": [
        {"at", "outcome", "kind", "user_agent", "remote_addr"}] (newest first, at most ``recent``)}``. Three
        reads (a count aggregation and two ``at``-ordered queries on the automatic single-field index).
    """
    from google.cloud import firestore as fs

    col = clients.firestore().collection("links").document(link_id_).collection("access")
    count = int(col.count(alias="n").get()[0][0].value)
    newest = [d.to_dict() or {} for d in col.order_by("at", direction=fs.Query.DESCENDING).limit(recent).stream()]
    first = [d.to_dict() or {} for d in col.order_by("at").limit(1).stream()] if count > len(newest) else newest[-1:]
    keys = ("at", "outcome", "kind", "user_agent", "remote_addr")
    return {"count": count, "first_at": first[0].get("at") if first else None,
            "last_at": newest[0].get("at") if newest else None,
            "recent": [{k: d.get(k) for k in keys} for d in newest]}
