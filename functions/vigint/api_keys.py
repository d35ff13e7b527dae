"""Per-user API keys of the tenant API (``tenant_api``): creation, verification, listing, revocation.

A key looks like ``vgk_{key_id}.{secret}``: ``key_id`` is 12 lower-case hex digits (the public handle,
used to find the record), ``secret`` 43 characters of base64url (256 random bits from ``secrets``). The
key is shown once, at creation; only its SHA-256 is stored (a fast hash is enough for a 256-bit random
secret: there is nothing to brute-force), in ``api_keys/{key_id}``::

    api_keys/{key_id}   tenant_id, name (the user's name, recorded as "who" on acknowledgements),
                        role ("admin"|"viewer"), key_sha256 (hex of the whole key), created_at,
                        created_by, revoked (bool), revoked_at, last_used_at

The collection is top-level so that a presented key is found with one document read, without knowing the
tenant; the tenant comes from the record, never from the request. ``verify`` hashes and compares in
constant time whether or not the record exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from google.cloud import firestore as fs

from vigint import clients
from vigint.schema import SLUG_PATTERN

log = logging.getLogger(__name__)

COLLECTION = "api_keys"
PREFIX = "vgk_"
ROLES = ("admin", "viewer")
Role = Literal["admin", "viewer"]
_KEY = re.compile(r"^vgk_([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
_DUMMY_HASH = hashlib.sha256(b"vigint-no-such-key").hexdigest()
# last_used_at is written at most this often per key (seconds), to keep reads cheap.
LAST_USED_RESOLUTION_S = 300


class ApiKeyError(ValueError):
    """Bad arguments for a key (role, name, tenant id); the message says which."""


@dataclass(frozen=True)
class ApiPrincipal:
    """Who a verified key belongs to.

    Attributes:
        key_id: the key's public id (12 hex digits).
        tenant_id: the only tenant the key can see.
        name: the user's name (1..100 characters).
        role: ``"admin"`` (everything) or ``"viewer"`` (read-only).
    """

    key_id: str
    tenant_id: str
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_key(key: str) -> str:
    """Lower-case hex SHA-256 of the key's UTF-8 bytes (what is stored)."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _ref(key_id: str):
    return clients.firestore().collection(COLLECTION).document(key_id)


def create_key(tenant_id: str, *, role: str, name: str, created_by: str = "operator") -> tuple[str, dict]:
    """Creates an API key for a user of a tenant.

    Args:
        tenant_id: the tenant the key is bound to (slug; the caller checks the tenant exists).
        role: ``"admin"`` or ``"viewer"``.
        name: the user's name, 1..100 printable characters.
        created_by: who created it (an operator, or the name of the admin key that did).

    Returns:
        ``(key, record)``: the full key (show it once, never log it) and the public record
        ``{"key_id", "tenant_id", "name", "role", "created_at"}`` (``created_at`` a UTC datetime).

    Raises:
        ApiKeyError: bad tenant id, role or name.
    """
    if not isinstance(tenant_id, str) or not re.match(SLUG_PATTERN, tenant_id):
        raise ApiKeyError(f"tenant id {tenant_id!r} must match {SLUG_PATTERN}")
    if role not in ROLES:
        raise ApiKeyError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiKeyError("name must be 1..100 printable characters")
    now = dt.datetime.now(dt.timezone.utc)
    for _ in range(5):  # 48-bit ids: a collision is astronomically rare, but never overwrite
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
        record = {"tenant_id": tenant_id, "name": name, "role": role, "key_sha256": hash_key(key),
                  "created_at": now, "created_by": created_by[:100], "revoked": False, "revoked_at": None,
                  "last_used_at": None}
        try:
            _ref(key_id).create(record)
        except Exception as exc:  # AlreadyExists: draw another id
            from google.api_core import exceptions as gexc

            if isinstance(exc, gexc.AlreadyExists):
                continue
            raise
        log.info("api key %s created for tenant %s (role %s)", key_id, tenant_id, role)
        return key, public_record(key_id, record)
    raise RuntimeError("could not allocate an API key id")  # pragma: no cover


def public_record(key_id: str, record: dict) -> dict:
    """The parts of a key record that may be shown: ``key_id, tenant_id, name, role, created_at,
    created_by, revoked, last_used_at``."""
    return {"key_id": key_id, **{k: record.get(k) for k in
                                 ("tenant_id", "name", "role", "created_at", "created_by", "revoked",
                                  "last_used_at")}}


def verify(presented: str | None, *, now: dt.datetime | None = None) -> ApiPrincipal | None:
    """Checks a presented key (the value after ``Bearer``).

    Returns:
        The key's ``ApiPrincipal``, or None for anything malformed, unknown, revoked or wrong. The hash
        comparison runs (constant time) even when no record exists.
    """
    m = _KEY.match(presented or "")
    record = None
    if m:
        snap = _ref(m.group(1)).get()
        record = snap.to_dict() if snap.exists else None
    expected = (record or {}).get("key_sha256") or _DUMMY_HASH
    ok = hmac.compare_digest(hash_key(presented or "").encode(), str(expected).encode())
    if not (m and record and ok) or record.get("revoked") or record.get("role") not in ROLES:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    last = record.get("last_used_at")
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_S:
        try:
            _ref(m.group(1)).update({"last_used_at": now})
        except Exception:  # bookkeeping only; never fail a request over it
            log.warning("api key %s: could not record last use", m.group(1))
    return ApiPrincipal(key_id=m.group(1), tenant_id=record["tenant_id"], name=record.get("name", ""),
                        role=record["role"])


def list_keys(tenant_id: str) -> list[dict]:
    """Public records of a tenant's keys (revoked ones included), oldest first."""
    q = clients.firestore().collection(COLLECTION).where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
    out = [public_record(s.id, s.to_dict()) for s in q.stream()]
    return sorted(out, key=lambda r: (r["created_at"] or dt.datetime.min.replace(tzinfo=dt.timezone.utc), r["key_id"]))


def revoke_key(tenant_id: str, key_id: str) -> dict | None:
    """Revokes a key of ``tenant_id``.

    Returns:
        The updated public record, or None when no such key belongs to that tenant (another tenant's
        key id is answered exactly like a missing one).
    """
    if not re.match(r"^[0-9a-f]{12}$", key_id or ""):
        return None
    ref = _ref(key_id)
    snap = ref.get()
    if not snap.exists or snap.get("tenant_id") != tenant_id:
        return None
    record = snap.to_dict()
    if not record.get("revoked"):
        record.update({"revoked": True, "revoked_at": dt.datetime.now(dt.timezone.utc)})
        ref.update({"revoked": True, "revoked_at": record["revoked_at"]})
        log.info("api key %s of tenant %s revoked", key_id, tenant_id)
    return public_record(key_id, record)
