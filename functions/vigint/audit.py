"""The tenant's audit trail: ``tenants/{t}/audit/{id}``, one document per action a person or a machine took.

What is recorded: legal holds and their release, link revocations, evidence exports, camera erasures (issue 14);
console sign-ins, clip views through the console or a shared link, settings changes, acknowledgements, shares and
commands (issue 11). Each entry::

    {"at": datetime (UTC),
     "actor": {"kind": "api_key" | "user" | "link" | "system" | "cli", "id": str, "name": str},
     "action": str (dotted, e.g. "event.hold"), "target": {"kind": str, "id": str},
     "details": {str: str | int | bool | None}, "expire_at": datetime}

Ids are ``{at in µs since the epoch, 16 digits}-{8 random hex}``: they sort by time within the tenant, and the
random suffix keeps two entries of the same microsecond apart. A tenant's audit writes are far below
Firestore's 500 writes per second for a collection with a rising indexed field
(https://cloud.google.com/firestore/docs/best-practices#high_read_write_and_delete_rates).
Entries are kept ``AUDIT_KEEP_DAYS`` (400 days: a year of audits plus a margin), then removed by the
Firestore TTL policy on ``expire_at`` (``terraform/firestore.tf``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from typing import Any

from vigint import pipeline

AUDIT_KEEP_DAYS = 400


def actor_of(principal: Any) -> dict:
    """The ``actor`` of an ``api_keys.ApiPrincipal`` (``key_id``, ``name``), of a console user's principal (its
    own ``actor``: ``{"kind": "user", ...}``), or of ``None`` (the system)."""
    if principal is None:
        return {"kind": "system", "id": "", "name": "vigint"}
    if isinstance(getattr(principal, "actor", None), dict):
        return dict(principal.actor)
    return {"kind": "api_key", "id": principal.key_id, "name": principal.name}


def record(tenant_id: str, *, actor: Mapping[str, str], action: str, target_kind: str, target_id: str,
           details: Mapping[str, Any] | None = None, now: dt.datetime | None = None, batch=None) -> str:
    """Writes one audit entry; returns its id.

    Args:
        actor: ``actor_of(principal)`` or ``{"kind": "cli", "id": "", "name": ...}``.
        action: what was done, e.g. ``"event.hold"``, ``"event.release"``, ``"link.revoke"``.
        target_kind, target_id: what it was done to (``"event"``/event id, ``"link"``/link id...).
        details: small scalar values only (no secrets, no link tokens).
        batch: a Firestore ``WriteBatch``/``Transaction`` to add the write to (the caller commits); None: now.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed (only when ``batch`` is None).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    micros = int(now.timestamp() * 1_000_000)
    entry_id = f"{micros:016d}-{secrets.token_hex(4)}"
    doc = {"at": now, "actor": dict(actor), "action": action, "target": {"kind": target_kind, "id": target_id},
           "details": dict(details or {}), "expire_at": now + dt.timedelta(days=AUDIT_KEEP_DAYS)}
    ref = pipeline.tenant_ref(tenant_id).collection("audit").document(entry_id)
    if batch is not None:
        batch.set(ref, doc)
    else:
        ref.set(doc)
    return entry_id


def entries(tenant_id: str, *, limit: int = 100) -> list[dict]:
    """The newest ``limit`` entries of the tenant, newest first (by ``at``, then id), each with its ``id``.

    Ordered on ``at`` (its automatic single-field index; ties go by document id in the same direction), not
    on ``__name__`` alone: the Firestore emulator refuses descending key scans."""
    col = pipeline.tenant_ref(tenant_id).collection("audit")
    docs = col.order_by("at", direction="DESCENDING").limit(limit).stream()
    return [{"id": d.id, **(d.to_dict() or {})} for d in docs]
