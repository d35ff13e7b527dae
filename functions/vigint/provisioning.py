"""The operator's path: create tenants and devices in Firestore (docs/contracts.md, "Firestore").

Device secrets are derived from ``VIGINT_DEVICE_KEY_SECRET`` and never stored; ``create_device`` returns
the secret once, for the operator to install on the edge box.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import api_keys, clients, config, device_keys
from vigint.schema import SLUG_PATTERN

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class ProvisioningError(ValueError):
    """Bad input or a conflicting existing record; the message says which."""


def _check_slug(kind: str, value: str) -> None:
    if not isinstance(value, str) or not re.match(SLUG_PATTERN, value):
        raise ProvisioningError(f"{kind} {value!r} must match {SLUG_PATTERN}")


def create_tenant(tenant_id: str, name: str, recipients: list[str], threshold: int = 1,
                  link_ttl_seconds: int = 7 * 24 * 3600, cooldown_seconds: int = 0,
                  normal_context: str = "") -> dict:
    """Creates ``tenants/{tenant_id}``.

    Args:
        tenant_id: slug (docs/contracts.md identifiers).
        name: display name.
        recipients: alert e-mail addresses (may be empty).
        threshold: lowest threat level (0..3) that sends an alert.
        link_ttl_seconds: lifetime of the video link in alert e-mails, seconds (1 s .. 30 days).
        cooldown_seconds: after an alert for a camera, later events of that camera alert only once this
            many seconds have passed (0: no cooldown).
        normal_context: what is normal at this site, given to the analysis prompt.

    Returns:
        The stored document as a dict (``created_at`` is the server timestamp sentinel).

    Raises:
        ProvisioningError: invalid arguments, or the tenant already exists.
    """
    _check_slug("tenant id", tenant_id)
    if not name or len(name) > 200:
        raise ProvisioningError("name must be 1..200 characters")
    bad = [r for r in recipients if not _EMAIL.match(r)]
    if bad:
        raise ProvisioningError(f"not an e-mail address: {', '.join(bad)}")
    if not 0 <= int(threshold) <= 3:
        raise ProvisioningError("threshold must be 0..3")
    if not 1 <= int(link_ttl_seconds) <= 30 * 24 * 3600:
        raise ProvisioningError("link_ttl_seconds must be 1..2592000 (30 days)")
    if int(cooldown_seconds) < 0:
        raise ProvisioningError("cooldown_seconds must be >= 0")
    doc = {
        "name": name,
        "created_at": fs.SERVER_TIMESTAMP,
        "normal_context": normal_context,
        "alert": {
            "threshold": int(threshold),
            "recipients": list(dict.fromkeys(recipients)),
            "link_ttl_seconds": int(link_ttl_seconds),
            "cooldown_seconds": int(cooldown_seconds),
        },
    }
    try:
        clients.firestore().collection("tenants").document(tenant_id).create(doc)
    except gexc.AlreadyExists:
        raise ProvisioningError(f"tenant {tenant_id} already exists") from None
    log.info("tenant created: %s (%d recipients)", tenant_id, len(doc["alert"]["recipients"]))
    return doc


def create_device(tenant_id: str, device_id: str, name: str = "") -> dict:
    """Creates ``tenants/{tenant_id}/devices/{device_id}`` with ``key_version`` 1, status active.

    Returns:
        ``{"tenant_id", "device_id", "key_version", "secret"}``: the credentials to install on the device.

    Raises:
        ProvisioningError: invalid ids, unknown tenant, or the device already exists.
    """
    _check_slug("tenant id", tenant_id)
    _check_slug("device id", device_id)
    db = clients.firestore()
    tenant = db.collection("tenants").document(tenant_id)
    if not tenant.get().exists:
        raise ProvisioningError(f"tenant {tenant_id} does not exist")
    from vigint import retention

    first = retention.first_key_version(tenant_id, device_id)  # above a deleted tenant's device of this id
    try:
        tenant.collection("devices").document(device_id).create(
            {"name": name or device_id, "status": "active", "key_version": first,
             "created_at": fs.SERVER_TIMESTAMP, "last_heartbeat_at": None}
        )
    except gexc.AlreadyExists:
        raise ProvisioningError(f"device {tenant_id}/{device_id} already exists") from None
    log.info("device created: %s/%s", tenant_id, device_id)
    return credentials(tenant_id, device_id, first)


def rotate_device_key(tenant_id: str, device_id: str) -> dict:
    """Bumps the device's ``key_version`` (the old secret stops working) and returns new credentials.

    Raises:
        ProvisioningError: unknown device.
    """
    ref = clients.firestore().collection("tenants").document(tenant_id).collection("devices").document(device_id)
    try:
        ref.update({"key_version": fs.Increment(1)})
    except gexc.NotFound:
        raise ProvisioningError(f"device {tenant_id}/{device_id} does not exist") from None
    return credentials(tenant_id, device_id, int(ref.get().get("key_version")))


def revoke_device(tenant_id: str, device_id: str) -> None:
    """Sets the device's status to ``revoked``: its requests and messages are refused from now on.

    Raises:
        ProvisioningError: unknown device.
    """
    ref = clients.firestore().collection("tenants").document(tenant_id).collection("devices").document(device_id)
    try:
        ref.update({"status": "revoked"})
    except gexc.NotFound:
        raise ProvisioningError(f"device {tenant_id}/{device_id} does not exist") from None
    log.info("device revoked: %s/%s", tenant_id, device_id)


def credentials(tenant_id: str, device_id: str, key_version: int) -> dict:
    """``{"tenant_id", "device_id", "key_version", "secret"}`` for a device (secret derived, see device_keys)."""
    secret = device_keys.derive_secret(
        config.settings().device_key_secret.get_secret_value(), tenant_id, device_id, key_version
    )
    return {"tenant_id": tenant_id, "device_id": device_id, "key_version": key_version, "secret": secret}


# ---- enrollment codes: one-use, short-lived codes an edge box exchanges for its credentials ----------

ENROLLMENT_COLLECTION = "enrollment_codes"
# Unambiguous upper-case alphabet (no 0/O, 1/I/L, U): 30 symbols, 12 of them = 58.9 bits.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_LEN = 12
ENROLLMENT_TTL_MAX_S = 24 * 3600


def _normalise_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").upper()


def enrollment_code_id(code: str) -> str:
    """Document id of an enrollment code: hex SHA-256 of the normalised code (upper case, no dashes)."""
    return hashlib.sha256(_normalise_code(code).encode("utf-8", "replace")).hexdigest()


def create_enrollment_code(tenant_id: str, device_id: str, name: str = "", ttl_seconds: int = 900,
                           created_by: str = "operator", now: dt.datetime | None = None) -> dict:
    """Creates a one-use enrollment code for a new device of ``tenant_id``.

    Only the code's SHA-256 is stored (``enrollment_codes/{sha256}``: tenant_id, device_id, name,
    created_at, expires_at, used_at, created_by). The edge exchanges it once at ``edge_api``
    ``POST /v1/enroll`` (``redeem_enrollment_code``).

    Args:
        tenant_id: existing tenant.
        device_id: id the new device will get (slug; must not exist yet).
        name: display name of the device (default: the id).
        ttl_seconds: lifetime of the code, 60..86400 seconds.
        created_by: who asked (user name of an API key, or "operator").
        now: current time (UTC), for tests.

    Returns:
        ``{"code": "XXXX-XXXX-XXXX", "tenant_id", "device_id", "expires_at": datetime (UTC)}``; the code is
        shown once.

    Raises:
        ProvisioningError: bad ids or ttl, unknown tenant, or the device already exists.
    """
    _check_slug("tenant id", tenant_id)
    _check_slug("device id", device_id)
    if not 60 <= int(ttl_seconds) <= ENROLLMENT_TTL_MAX_S:
        raise ProvisioningError(f"ttl_seconds must be 60..{ENROLLMENT_TTL_MAX_S}")
    tenant = clients.firestore().collection("tenants").document(tenant_id)
    if not tenant.get().exists:
        raise ProvisioningError(f"tenant {tenant_id} does not exist")
    if tenant.collection("devices").document(device_id).get().exists:
        raise ProvisioningError(f"device {tenant_id}/{device_id} already exists")
    now = now or dt.datetime.now(dt.timezone.utc)
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LEN))
    code = "-".join(raw[i:i + 4] for i in range(0, _CODE_LEN, 4))
    expires_at = now + dt.timedelta(seconds=int(ttl_seconds))
    clients.firestore().collection(ENROLLMENT_COLLECTION).document(enrollment_code_id(code)).create(
        {"tenant_id": tenant_id, "device_id": device_id, "name": name or device_id, "created_at": now,
         "expires_at": expires_at, "used_at": None, "created_by": created_by[:100]}
    )
    log.info("enrollment code created for %s/%s (expires %s)", tenant_id, device_id, expires_at.isoformat())
    return {"code": code, "tenant_id": tenant_id, "device_id": device_id, "expires_at": expires_at}


def redeem_enrollment_code(code: str, now: dt.datetime | None = None) -> dict | None:
    """Exchanges an enrollment code for device credentials, at most once (Firestore transaction).

    Creates ``tenants/{t}/devices/{d}`` (status active, key_version 1) and marks the code used.

    Returns:
        ``{"tenant_id", "device_id", "key_version", "secret"}``, or None if the code is malformed, unknown,
        already used, expired, or its device id was taken meanwhile (the caller answers all alike).
    """
    norm = _normalise_code(code if isinstance(code, str) else "")
    if len(norm) != _CODE_LEN or any(c not in _CODE_ALPHABET for c in norm):
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    db = clients.firestore()
    code_ref = db.collection(ENROLLMENT_COLLECTION).document(enrollment_code_id(norm))
    from vigint import retention

    @fs.transactional
    def _redeem(tx) -> tuple[str, str] | None:
        snap = code_ref.get(transaction=tx)
        if not snap.exists:
            return None
        rec = snap.to_dict()
        if rec.get("used_at") is not None or rec["expires_at"] <= now:
            return None
        dev_ref = db.collection("tenants").document(rec["tenant_id"]).collection("devices").document(rec["device_id"])
        if dev_ref.get(transaction=tx).exists:
            return None
        first = retention.first_key_version(rec["tenant_id"], rec["device_id"])  # above a deleted tenant's device
        tx.create(dev_ref, {"name": rec.get("name") or rec["device_id"], "status": "active", "key_version": first,
                            "created_at": now, "last_heartbeat_at": None, "enrolled_at": now})
        tx.update(code_ref, {"used_at": now})
        return rec["tenant_id"], rec["device_id"], first

    got = _redeem(db.transaction())
    if got is None:
        log.info("enrollment: code refused (unknown, used or expired)")
        return None
    log.info("device enrolled: %s/%s", got[0], got[1])
    return credentials(*got)


# ---- API keys of the tenant API --------------------------------------------------------------------


def create_api_key(tenant_id: str, role: str, name: str, created_by: str = "operator") -> dict:
    """Creates an API key for a user of an existing tenant (e.g. its first admin).

    Returns:
        ``{"key", "key_id", "tenant_id", "name", "role", "created_at"}``: ``key`` is shown once.

    Raises:
        ProvisioningError: unknown tenant, bad role or name.
    """
    _check_slug("tenant id", tenant_id)
    if not clients.firestore().collection("tenants").document(tenant_id).get().exists:
        raise ProvisioningError(f"tenant {tenant_id} does not exist")
    try:
        key, record = api_keys.create_key(tenant_id, role=role, name=name, created_by=created_by)
    except api_keys.ApiKeyError as exc:
        raise ProvisioningError(str(exc)) from None
    return {"key": key, **{k: record[k] for k in ("key_id", "tenant_id", "name", "role", "created_at")}}
