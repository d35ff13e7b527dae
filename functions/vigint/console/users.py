"""People who sign in to the console: ``tenants/{t}/users/{user_id}``, their roles and the sites they may see.

Document::

    {"email": str (lower-case), "name": str, "role": "owner" | "admin" | "operator" | "viewer",
     "site_ids": [str] | None (None: every site), "status": "invited" | "active" | "disabled",
     "created_at": datetime, "created_by": str, "last_signin_at": datetime | None}

``user_id`` is the first 16 hex digits of the SHA-256 of the lower-cased address, so one address is one user
per tenant without a query, and the same address may be a user of several tenants (an installer, say). Finding
the tenants of an address at sign-in is a collection-group query on ``users.email`` (its collection-group index is
declared in ``terraform/firestore.tf``).

What each role may do (``can``): every role watches; ``operator`` also acknowledges, shares and requests clips;
``admin`` also changes settings, devices, cameras, users and API keys and reads the audit log; ``owner`` also
manages owners, billing and the tenant itself. A user limited to some sites sees only their cameras and cannot
change tenant-wide settings whatever the role.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

from google.cloud import firestore as fs

from vigint import clients, pipeline

ROLES = ("owner", "admin", "operator", "viewer")
# action -> roles allowed to do it
_ALLOWED = {
    "watch": set(ROLES),
    "acknowledge": {"owner", "admin", "operator"},
    "share": {"owner", "admin", "operator"},
    "request_clip": {"owner", "admin", "operator"},
    "manage": {"owner", "admin"},
    "own": {"owner"},
}
ACTIONS = tuple(_ALLOWED)
# RFC 5321 caps a path at 256 octets; a pragmatic shape check (one @, a dot in the domain, no spaces).
EMAIL_PATTERN = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")
MAX_NAME = 100


class UserError(ValueError):
    """A bad e-mail address, role, name or site list; the message names it."""


@dataclasses.dataclass(frozen=True)
class ConsoleUser:
    """A signed-in person.

    Attributes:
        tenant_id: the only tenant they see.
        user_id: 16 hex digits (``user_id_of(email)``).
        email: lower-case address.
        name: display name.
        role: one of ``ROLES``.
        site_ids: the sites they may see, or None for every site.
        session_id: the hashed id of the session this request came with ("" outside a request).
    """

    tenant_id: str
    user_id: str
    email: str
    name: str
    role: str
    site_ids: tuple[str, ...] | None = None
    session_id: str = ""

    def can(self, action: str) -> bool:
        """Whether the role allows ``action`` (one of ``ACTIONS``); tenant-wide ``manage``/``own`` also needs
        access to every site."""
        if action in ("manage", "own") and self.site_ids is not None:
            return False
        return self.role in _ALLOWED[action]

    def sees_site(self, site_id: str | None) -> bool:
        """Whether a camera of ``site_id`` is visible (cameras of no site only to users of every site)."""
        return self.site_ids is None or (site_id is not None and site_id in self.site_ids)

    @property
    def actor(self) -> dict:
        """The ``actor`` of this user's audit entries."""
        return {"kind": "user", "id": self.user_id, "name": self.email}


def normalise_email(email: str) -> str:
    """``email`` stripped and lower-cased.

    Raises:
        UserError: it does not look like an address.
    """
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise UserError("email: not an e-mail address")
    return email


def user_id_of(email: str) -> str:
    """16 hex digits of the SHA-256 of the normalised address."""
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()[:16]


def users_col(tenant_id: str):
    """``tenants/{tenant_id}/users``."""
    return pipeline.tenant_ref(tenant_id).collection("users")


def _check(role: str, name: str, site_ids) -> None:
    if role not in ROLES:
        raise UserError(f"role: must be one of {', '.join(ROLES)}")
    if not name or len(name) > MAX_NAME:
        raise UserError(f"name: 1 to {MAX_NAME} characters")
    if site_ids is not None and not all(isinstance(s, str) and s for s in site_ids):
        raise UserError("site_ids: a list of site ids")


def put_user(tenant_id: str, *, email: str, role: str, name: str | None = None,
             site_ids: list[str] | None = None, created_by: str = "system", status: str = "invited",
             now: dt.datetime | None = None) -> ConsoleUser:
    """Creates the user of ``email`` in the tenant, or changes the role, name and sites of an existing one
    (an existing user keeps their status and creation time).

    Raises:
        UserError: bad address, role, name or sites.
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    email = normalise_email(email)
    name = (name or email.split("@")[0]).strip()
    _check(role, name, site_ids)
    now = now or dt.datetime.now(dt.timezone.utc)
    uid = user_id_of(email)
    ref = users_col(tenant_id).document(uid)
    fields = {"email": email, "name": name, "role": role, "site_ids": list(site_ids) if site_ids is not None else None,
              "updated_at": now}
    if ref.get().exists:
        ref.update(fields)
    else:
        ref.set({**fields, "status": status, "created_at": now, "created_by": created_by, "last_signin_at": None})
    return ConsoleUser(tenant_id, uid, email, name, role, tuple(site_ids) if site_ids is not None else None)


def from_doc(tenant_id: str, user_id: str, doc: dict, session_id: str = "") -> ConsoleUser | None:
    """The ``ConsoleUser`` of a stored document, or None when it is disabled or malformed."""
    if not doc or doc.get("status") == "disabled" or doc.get("role") not in ROLES or not doc.get("email"):
        return None
    sites = doc.get("site_ids")
    return ConsoleUser(tenant_id, user_id, doc["email"], doc.get("name") or doc["email"], doc["role"],
                       tuple(sites) if isinstance(sites, list) else None, session_id)


def get_user(tenant_id: str, user_id: str) -> ConsoleUser | None:
    """The user, or None (missing or disabled)."""
    snap = users_col(tenant_id).document(user_id).get()
    return from_doc(tenant_id, user_id, snap.to_dict() or {}) if snap.exists else None


def memberships(email: str) -> list[ConsoleUser]:
    """Every tenant's enabled user of ``email`` (a collection-group query on ``users.email``), by tenant id.

    Raises:
        UserError: not an address.
    """
    email = normalise_email(email)
    out = []
    for snap in clients.firestore().collection_group("users").where(
            filter=fs.FieldFilter("email", "==", email)).limit(50).stream():
        tenant_id = snap.reference.parent.parent.id
        user = from_doc(tenant_id, snap.id, snap.to_dict() or {})
        if user is not None:
            out.append(user)
    return sorted(out, key=lambda u: u.tenant_id)


def list_users(tenant_id: str) -> list[tuple[str, dict]]:
    """``(user_id, document)`` of every user of the tenant, by e-mail address."""
    return sorted(((s.id, s.to_dict() or {}) for s in users_col(tenant_id).limit(1000).stream()),
                  key=lambda p: p[1].get("email", ""))
