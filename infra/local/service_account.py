"""A service-account key made on the spot, so the local stack can sign V4 URLs offline.

fake-gcs-server checks neither signature nor expiry (shared/DESIGN.md), but the functions sign exactly as
they do in Google Cloud with a key file; the key is generated per stack and never leaves ``workdir``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def write_key(path: Path, project: str) -> Path:
    """Writes a service-account JSON key (RSA 2048) to ``path`` with mode 0600 unless one exists.

    Returns:
        ``path``.
    """
    if path.exists():
        return path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = f"vigint-signer@{project}.iam.gserviceaccount.com"
    data = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": os.urandom(20).hex(),
        "private_key": pem,
        "client_email": email,
        "client_id": str(int.from_bytes(os.urandom(8), "big")),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return path


def write_export_signing_key(path: Path) -> Path:
    """Writes an ECDSA P-256 private key (PKCS#8 PEM, mode 0600) for signing evidence exports unless one exists
    (``VIGINT_EXPORT_SIGNING_KEY_FILE``; in Google Cloud a Cloud KMS key signs instead).

    Returns:
        ``path``.
    """
    if path.exists():
        return path
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path
