"""Device secrets and message signatures (docs/contracts.md, "Device credentials").

A device secret is derived, never stored::

    secret = base64url_nopad(HMAC-SHA256(VIGINT_DEVICE_KEY_SECRET, "vigint-device:{tenant}:{device}:{key_version}"))

Both keys are used as their UTF-8 bytes. An event message's ``signature`` attribute is the lower-case hex
``HMAC-SHA256(secret_utf8, data)`` over the exact message data bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def derive_secret(master_key: str | bytes, tenant_id: str, device_id: str, key_version: int) -> str:
    """Returns the device secret (43 characters of base64url without padding).

    Args:
        master_key: ``VIGINT_DEVICE_KEY_SECRET`` (str is used as UTF-8).
        tenant_id: the device's tenant.
        device_id: the device.
        key_version: the device's current key version (int >= 1).
    """
    key = master_key.encode() if isinstance(master_key, str) else master_key
    info = f"vigint-device:{tenant_id}:{device_id}:{int(key_version)}".encode()
    digest = hmac.new(key, info, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def secrets_equal(presented: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (any length, any content)."""
    return hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def sign(secret: str, data: bytes) -> str:
    """Lower-case hex ``HMAC-SHA256(secret, data)``: the ``signature`` attribute of an event message."""
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def verify(secret: str, data: bytes, signature: str) -> bool:
    """True if ``signature`` is ``sign(secret, data)``; constant-time, False for anything malformed."""
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign(secret, data).encode(), signature.strip().lower().encode("utf-8", "replace"))
