"""The operator's path: create tenants and devices in Firestore (docs/contracts.md, "Firestore").

Device secrets are derived from ``VIGINT_DEVICE_KEY_SECRET`` and never stored; ``create_device`` returns
the secret once, for the operator to install on the edge box.
"""

from __future__ import annotations

import logging
import re

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, device_keys
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
    try:
        tenant.collection("devices").document(device_id).create(
            {"name": name or device_id, "status": "active", "key_version": 1,
             "created_at": fs.SERVER_TIMESTAMP, "last_heartbeat_at": None}
        )
    except gexc.AlreadyExists:
        raise ProvisioningError(f"device {tenant_id}/{device_id} already exists") from None
    log.info("device created: %s/%s", tenant_id, device_id)
    return credentials(tenant_id, device_id, 1)


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
