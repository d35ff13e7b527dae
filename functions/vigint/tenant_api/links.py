"""Handlers: the video links of an event (``/v1/events/{event_id}/links``) and their revocation.

A link is ``links/{sha256(token)}`` (``vigint.links``); the API shows its id, never the token (which exists
only in the e-mail). Tenant isolation: an event of another tenant is answered like a missing one (404), the
listing filters on the caller's tenant id, and a link id of another tenant is 404 like an unknown one.
Revocation (admin keys) is idempotent; each link revoked gets ``revoked_at``, ``revoked_by`` and an audit
entry ``link.revoke`` (``vigint.audit``). Its page, state, playlist and downloads answer 410 from the next
request on, and the signed media URLs it handed out run out within 60 s (``vigint.video_link``).
"""

from __future__ import annotations

import datetime as dt
import logging

from vigint import audit, links
from vigint.tenant_api import models as m
from vigint.tenant_api.events import PARAMS as EVENT_PARAMS
from vigint.tenant_api.events import _event_snap
from vigint.tenant_api.http import Request, not_found

log = logging.getLogger(__name__)

PARAMS = {"link_id": m.LINK_ID_PATTERN}
EVENT_LINK_PARAMS = EVENT_PARAMS
RECENT_ACCESSES = 20


def link_out(doc: dict, now: dt.datetime) -> m.LinkOut:
    """The API's view of a link document (``{"id": link id, **links/{id}}``), with its access log.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed (three reads of the access log).
    """
    by = doc.get("revoked_by") if isinstance(doc.get("revoked_by"), dict) else None
    return m.LinkOut(
        link_id=doc["id"], event_id=str(doc.get("event_id", "")), recipient=str(doc.get("recipient", "")),
        created_at=doc.get("created_at"), expires_at=doc.get("expires_at"), revoked=bool(doc.get("revoked")),
        revoked_at=doc.get("revoked_at"),
        revoked_by=m.Actor(kind=str(by.get("kind", "")), id=str(by.get("id", "")), name=str(by.get("name", "")))
        if by else None,
        state=links.state_of(doc, now),
        accesses=m.LinkAccesses(**links.accesses(doc["id"], recent=RECENT_ACCESSES)),
    )


def list_links(req: Request):
    """``GET /v1/events/{event_id}/links``: ``LinkList``, oldest first.

    Raises:
        ApiError: 404 for an event that does not exist in the caller's tenant.
    """
    snap = _event_snap(req)
    docs = links.of_event(req.tenant_id, snap.id)
    return m.LinkList(event_id=snap.id, links=[link_out(d, req.now) for d in docs]), 200


def revoke_link(req: Request):
    """``POST /v1/links/{link_id}/revoke`` (admin): ``LinkOut`` of the revoked link; idempotent.

    Raises:
        ApiError: 404 for an unknown link or a link of another tenant.
    """
    doc = links.revoke(req.params["link_id"], by=audit.actor_of(req.principal), now=req.now,
                       tenant_id=req.tenant_id)
    if doc is None:
        raise not_found("link not found")
    log.info("tenant_api: link %s… of %s revoked by key %s", doc["id"][:12], req.tenant_id, req.principal.key_id)
    return link_out(doc, req.now), 200


def revoke_event_links(req: Request):
    """``POST /v1/events/{event_id}/links/revoke`` (admin): revokes every link of the event (``LinksRevoked``,
    ``revoked`` counting those this call revoked).

    Raises:
        ApiError: 404 for an event that does not exist in the caller's tenant.
    """
    snap = _event_snap(req)
    actor = audit.actor_of(req.principal)
    out, revoked = [], 0
    for doc in links.of_event(req.tenant_id, snap.id):
        if not doc.get("revoked"):
            doc = links.revoke(doc["id"], by=actor, now=req.now, tenant_id=req.tenant_id) or doc
            revoked += bool(doc.get("revoked_now"))
        out.append(link_out(doc, req.now))
    log.info("tenant_api: %d links of event %s/%s revoked by key %s", revoked, req.tenant_id, snap.id,
             req.principal.key_id)
    return m.LinksRevoked(event_id=snap.id, revoked=revoked, links=out), 200
