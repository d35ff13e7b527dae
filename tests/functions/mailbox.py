"""Test helpers for alert e-mails: fresh recipient addresses and the SMTP sink's messages by recipient."""

from __future__ import annotations

import uuid


def recipients(n: int = 2) -> list[str]:
    """``n`` addresses no other test uses (``guard{i}-{random}@example.com``)."""
    tag = uuid.uuid4().hex[:8]
    return [f"guard{i}-{tag}@example.com" for i in range(n)]


def by_recipient(smtp_sink, addresses) -> dict:
    """``{address: [EmailMessage, ...]}`` of the sink's messages to each of ``addresses``, oldest first."""
    out = {r: [] for r in addresses}
    for m in smtp_sink.messages():
        if m["To"] in out:
            out[m["To"]].append(m)
    return out
