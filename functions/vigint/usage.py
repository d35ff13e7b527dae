"""Monthly usage counters of a tenant: ``tenants/{t}/usage/{YYYY-MM}``.

Fields (all integers, created on first use, incremented atomically with ``firestore.Increment``):

* ``events``: events stored by ``ingest`` (counted once per event, in the same batch as the event document);
* ``clip_bytes``: bytes of the clips those events reference (``clip.bytes``, as the edge reported them);
* ``gemini_tokens``: ``usage_metadata.total_token_count`` of the Gemini answers for the tenant's events;
* ``emails_sent``: alert e-mails the SMTP server accepted.

The month is the UTC calendar month of the moment the thing happened (not of the event's time). Each write
also sets ``month`` (``YYYY-MM``) and ``updated_at``. The functions write these documents; the tenant API
reads them (``get``).
"""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore as fs

from vigint import pipeline

FIELDS = ("events", "clip_bytes", "gemini_tokens", "emails_sent")


def month_key(now: dt.datetime | None = None) -> str:
    """``YYYY-MM`` of ``now`` (default the current time) in UTC."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(dt.timezone.utc)
    return f"{now.year:04d}-{now.month:02d}"


def usage_ref(tenant_id: str, month: str):
    """``tenants/{tenant_id}/usage/{month}``."""
    return pipeline.tenant_ref(tenant_id).collection("usage").document(month)


def increments(now: dt.datetime | None = None, **amounts: int) -> dict:
    """The merge-``set`` payload adding ``amounts`` (keys from ``FIELDS``) to a usage document.

    Use it in a batch/transaction together with the write it accounts for, so both happen or neither.

    Raises:
        ValueError: an unknown counter name or a negative amount.
    """
    unknown = set(amounts) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown usage counter(s): {', '.join(sorted(unknown))}")
    doc: dict = {"month": month_key(now), "updated_at": fs.SERVER_TIMESTAMP}
    for name, amount in amounts.items():
        if int(amount) < 0:
            raise ValueError(f"usage counter {name} cannot decrease")
        if int(amount):
            doc[name] = fs.Increment(int(amount))
    return doc


def add(tenant_id: str, *, now: dt.datetime | None = None, batch=None, **amounts: int) -> None:
    """Adds ``amounts`` to the tenant's counters of the month of ``now``.

    Args:
        tenant_id: the tenant.
        now: when it happened (UTC); default the current time.
        batch: a ``WriteBatch``/``Transaction`` to add the write to (committed by the caller); None writes now.
        amounts: ``events=1``, ``clip_bytes=n``, ``gemini_tokens=n``, ``emails_sent=1``.

    Raises:
        ValueError: see ``increments``.
        google.api_core.exceptions.GoogleAPICallError: Firestore failed (only when ``batch`` is None).
    """
    ref = usage_ref(tenant_id, month_key(now))
    payload = increments(now, **amounts)
    if batch is not None:
        batch.set(ref, payload, merge=True)
    else:
        ref.set(payload, merge=True)


def get(tenant_id: str, month: str | None = None) -> dict:
    """The tenant's counters for ``month`` (``YYYY-MM``, default the current month); missing ones are 0."""
    snap = usage_ref(tenant_id, month or month_key()).get()
    data = snap.to_dict() if snap.exists else {}
    return {name: int(data.get(name) or 0) for name in FIELDS}
