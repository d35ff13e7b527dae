"""Password-less sign-in: one-time links e-mailed to a user, ``console_signin_links/{sha256(token)}``.

A link is ``{console}/signin/link?t={token}`` (32 random bytes); it works once, for ``LINK_TTL_S`` (15 minutes,
issue 11), and only to sign in as the user it was made for. Opening it shows a button; only the button's POST
uses it, so a mail scanner that fetches links does not burn it. Document::

    {"tenant_id", "user_id", "email", "created_at", "expire_at" (also the Firestore TTL field), "used_at": None,
     "ip"}

Requests are limited per address (``PER_ADDRESS``) and per client IP (``PER_IP``) in fixed windows of
``WINDOW_S``, counted in ``console_signin_limits/{kind}-{sha256(value)}``; such a counter is written once per
request for one address or client, far below Firestore's one sustained write per second per document. Whatever
the address (unknown, limited, several tenants), the answer the browser gets is the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
from email.message import EmailMessage

from google.cloud import firestore as fs

from vigint import clients, config, mailer, pipeline
from vigint.console import users

log = logging.getLogger(__name__)

LINKS = "console_signin_links"
LIMITS = "console_signin_limits"
LINK_TTL_S = 15 * 60
WINDOW_S = 15 * 60
PER_ADDRESS = 5
PER_IP = 30


@dataclasses.dataclass(frozen=True)
class PendingLink:
    """What a valid, unused link would sign in as (shown on the confirmation page)."""

    key: str
    tenant_id: str
    user_id: str
    email: str


def key_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _allowed(kind: str, value: str, limit: int, now: dt.datetime) -> bool:
    """Counts one request of ``kind``/``value`` in its window; False once the window has ``limit``."""
    ref = clients.firestore().collection(LIMITS).document(f"{kind}-{hashlib.sha256(value.encode()).hexdigest()}")

    @fs.transactional
    def txn(tx) -> bool:
        snap = ref.get(transaction=tx)
        d = snap.to_dict() if snap.exists else {}
        start = d.get("window_start")
        if not start or (now - start).total_seconds() >= WINDOW_S:
            tx.set(ref, {"window_start": now, "count": 1, "expire_at": now + dt.timedelta(seconds=2 * WINDOW_S)})
            return True
        if d.get("count", 0) >= limit:
            return False
        tx.update(ref, {"count": d.get("count", 0) + 1})
        return True

    return txn(clients.firestore().transaction())


def make_link(user: users.ConsoleUser, *, ip: str | None, now: dt.datetime) -> str:
    """A new one-time sign-in URL for ``user`` (no limit applied: the CLI and invitations use it).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    token = secrets.token_urlsafe(32)
    clients.firestore().collection(LINKS).document(key_of(token)).create({
        "tenant_id": user.tenant_id, "user_id": user.user_id, "email": user.email, "created_at": now,
        "expire_at": now + dt.timedelta(seconds=LINK_TTL_S), "used_at": None, "ip": (ip or "")[:64]})
    return f"{base_url()}/signin/link?t={token}"


def base_url() -> str:
    """The console's origin as links name it."""
    return config.settings().console_base_url or "http://127.0.0.1"


def request_link(email: str, *, ip: str | None, now: dt.datetime, send=None) -> None:
    """Sends one e-mail with a sign-in link per tenant ``email`` is a user of, unless a limit is reached.

    Never says whether the address is known: unknown, limited and malformed addresses return the same way, and
    so does a known one whose e-mail could not be sent (logged as an error). The SMTP send is synchronous, so a
    known address answers later than an unknown one by one SMTP submission (a timing difference, not hidden).
    ``send`` (tests) replaces the SMTP send of the ``EmailMessage``.
    """
    try:
        email = users.normalise_email(email)
    except users.UserError:
        return
    if not _allowed("ip", ip or "-", PER_IP, now) or not _allowed("address", email, PER_ADDRESS, now):
        log.warning("console sign-in: a request limit was reached (address or client); no link sent")
        return
    members = users.memberships(email)
    if not members:
        log.info("console sign-in: no user for the address; nothing sent")
        return
    lines = []
    for user in members:
        name = (pipeline.tenant_ref(user.tenant_id).get().to_dict() or {}).get("name") or user.tenant_id
        lines.append((name, make_link(user, ip=ip, now=now)))
    msg = EmailMessage()
    msg["From"] = config.settings().mail_from
    msg["To"] = email
    msg["Subject"] = "Your Vigint sign-in link"
    body = ["Open the link to sign in to the Vigint console. It works once, within 15 minutes.", ""]
    for name, url in lines:
        body += [f"{name}:", url, ""]
    body += ["If you did not ask to sign in, ignore this e-mail."]
    msg.set_content("\n".join(body))
    try:
        (send or mailer.Mailer.from_settings(config.settings()).send)(msg)
    except Exception as exc:  # noqa: BLE001 - the answer must not tell a known address from an unknown one
        log.error("console sign-in: the link e-mail could not be sent (%s); the person may ask again",
                  type(exc).__name__)
        return
    log.info("console sign-in: link e-mailed (%d tenant(s))", len(lines))


def peek(token: str, *, now: dt.datetime) -> PendingLink | None:
    """The link's user if it is valid and unused (the confirmation page), else None; uses nothing."""
    if not token or len(token) > 100:
        return None
    snap = clients.firestore().collection(LINKS).document(key_of(token)).get()
    d = snap.to_dict() if snap.exists else None
    if not d or d.get("used_at") or now >= d["expire_at"]:
        return None
    return PendingLink(snap.id, d["tenant_id"], d["user_id"], d["email"])


def consume(token: str, *, now: dt.datetime) -> PendingLink | None:
    """Uses the link (in a transaction: of two concurrent uses one wins); None when it is unknown, used or
    expired."""
    if not token or len(token) > 100:
        return None
    ref = clients.firestore().collection(LINKS).document(key_of(token))

    @fs.transactional
    def txn(tx):
        snap = ref.get(transaction=tx)
        d = snap.to_dict() if snap.exists else None
        if not d or d.get("used_at") or now >= d["expire_at"]:
            return None
        tx.update(ref, {"used_at": now})
        return PendingLink(snap.id, d["tenant_id"], d["user_id"], d["email"])

    return txn(clients.firestore().transaction())
