"""The key that signs evidence export manifests, behind one small interface (``Signer``).

Two implementations, chosen once in ``signer()`` (the composition root of exports):

* ``KmsSigner`` (Google Cloud, ``VIGINT_EXPORT_KMS_KEY``): a Cloud KMS asymmetric key version of algorithm
  ``EC_SIGN_P256_SHA256`` (terraform/kms.tf). The private key never leaves KMS; ``asymmetricSign`` takes the
  SHA-256 digest and answers a DER-encoded ECDSA signature, ``getPublicKey`` the PEM public key
  (https://cloud.google.com/kms/docs/create-validate-signatures). Called over REST with the function's default
  credentials (``google.auth``), so no extra client library is needed.
* ``LocalKeySigner`` (the local stack, ``VIGINT_EXPORT_SIGNING_KEY_FILE``): an ECDSA P-256 private key in a
  PEM file that the stack generates (``infra/local/service_account.write_export_signing_key``).

Both produce the same thing: an ECDSA P-256 / SHA-256 signature in DER form over the exact bytes of
``manifest.json``, which anyone holding the public key can check offline (``vigint.evidence_export.verify``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Protocol

from vigint import config

ALGORITHM = "ECDSA_P256_SHA256"  # Cloud KMS: EC_SIGN_P256_SHA256
KMS_ENDPOINT = "https://cloudkms.googleapis.com/v1"
KMS_TIMEOUT_S = 30.0


class SigningUnavailable(RuntimeError):
    """No export signing key is configured (neither KMS nor a key file)."""


class Signer(Protocol):
    """Signs export manifests."""

    algorithm: str

    def sign(self, data: bytes) -> bytes:
        """The DER-encoded ECDSA P-256 signature of SHA-256(``data``)."""

    def public_key_pem(self) -> str:
        """The public key, PEM (SubjectPublicKeyInfo)."""


def key_id(public_key_pem: str) -> str:
    """A short, stable id of a public key: the first 16 hex digits of SHA-256 over its DER form."""
    from cryptography.hazmat.primitives import serialization

    pub = serialization.load_pem_public_key(public_key_pem.encode())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


class LocalKeySigner:
    """ECDSA P-256 with a private key from a PEM file (the local stack).

    Raises:
        SigningUnavailable: the file is missing or not an ECDSA P-256 private key.
    """

    algorithm = ALGORITHM

    def __init__(self, path: str):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            with open(path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError) as exc:
            raise SigningUnavailable(f"export signing key file unusable: {type(exc).__name__}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SigningUnavailable("export signing key must be ECDSA P-256")
        self._key = key

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class KmsSigner:
    """A Cloud KMS ``EC_SIGN_P256_SHA256`` key version (``projects/P/locations/L/keyRings/R/cryptoKeys/K/
    cryptoKeyVersions/N``); the function's account needs ``cloudkms.cryptoKeyVersions.useToSign`` and
    ``viewPublicKey`` on that key only (terraform/kms.tf).

    Args:
        key_version: the key version's resource name.
        session: a ``google.auth.transport.requests.AuthorizedSession`` (default: application default
            credentials).
    """

    algorithm = ALGORITHM

    def __init__(self, key_version: str, session=None):
        self._name = key_version
        self._session = session
        self._pem: str | None = None

    def _http(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloudkms"])
            self._session = AuthorizedSession(creds)
        return self._session

    def sign(self, data: bytes) -> bytes:
        """Raises ``requests.HTTPError`` when KMS refuses (transient errors: the caller answers 503)."""
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        r = self._http().post(f"{KMS_ENDPOINT}/{self._name}:asymmetricSign", json={"digest": {"sha256": digest}},
                              timeout=KMS_TIMEOUT_S)
        r.raise_for_status()
        return base64.b64decode(r.json()["signature"])

    def public_key_pem(self) -> str:
        if self._pem is None:
            r = self._http().get(f"{KMS_ENDPOINT}/{self._name}/publicKey", timeout=KMS_TIMEOUT_S)
            r.raise_for_status()
            self._pem = r.json()["pem"]
        return self._pem


def signer() -> Signer:
    """The export signer of this process: KMS if ``VIGINT_EXPORT_KMS_KEY`` is set, else the local key file
    (built once per configuration and cached).

    Raises:
        SigningUnavailable: neither is configured (or the file is unusable).
    """
    s = config.settings()
    return _build(s.export_kms_key, s.export_signing_key_file)


@functools.lru_cache(maxsize=4)
def _build(kms_key: str | None, key_file: str | None) -> Signer:
    if kms_key:
        return KmsSigner(kms_key)
    if key_file:
        return LocalKeySigner(key_file)
    raise SigningUnavailable("set VIGINT_EXPORT_KMS_KEY (Cloud KMS) or VIGINT_EXPORT_SIGNING_KEY_FILE")
