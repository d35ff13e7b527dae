"""The clips bucket: V4 signed URLs and object downloads.

Signing credentials:

* ``VIGINT_SIGNING_SERVICE_ACCOUNT`` set (Google Cloud): the function's default credentials sign through
  IAM ``signBlob`` as that account (``service_account_email`` + ``access_token``; the function's own
  account needs ``roles/iam.serviceAccountTokenCreator`` on it).
* otherwise: the service-account key file in ``GOOGLE_APPLICATION_CREDENTIALS`` signs locally (the local
  stack generates one). URLs then point at ``STORAGE_EMULATOR_HOST`` when it is set.

Signed URLs carry their signature in the query string: never log them (``redact_url`` helps).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from vigint import clients, config

log = logging.getLogger(__name__)

_signer_lock = threading.Lock()
_signer: object | None = None


class SigningError(RuntimeError):
    """No credentials that can sign URLs are configured."""


def reset_signer() -> None:
    """Forgets the cached signing credentials (``vigint.clients.reset()`` calls this)."""
    global _signer
    with _signer_lock:
        _signer = None


def _signing_kwargs() -> dict:
    """Keyword arguments for ``Blob.generate_signed_url`` that select the signer."""
    global _signer
    s = config.settings()
    with _signer_lock:
        if s.signing_service_account:
            import google.auth
            import google.auth.transport.requests

            if _signer is None:
                _signer, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            if not _signer.valid:
                _signer.refresh(google.auth.transport.requests.Request())
            return {"service_account_email": s.signing_service_account, "access_token": _signer.token}
        if _signer is None:
            path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if not path:
                raise SigningError(
                    "cannot sign URLs: set VIGINT_SIGNING_SERVICE_ACCOUNT (IAM signBlob) or "
                    "GOOGLE_APPLICATION_CREDENTIALS (a service-account key file)"
                )
            from google.oauth2 import service_account

            _signer = service_account.Credentials.from_service_account_file(path)
        return {"credentials": _signer}


def prepare_signer() -> None:
    """Loads the signing credentials now (``clients.warm_in_background``), not on the first signed URL.

    Raises:
        SigningError: no signing credentials are configured.
    """
    _signing_kwargs()


def _blob(object_name: str):
    s = config.settings()
    return clients.storage().bucket(s.bucket).blob(object_name)


def signed_url(object_name: str, *, method: str, ttl_seconds: int, content_type: str | None = None,
               now: dt.datetime | None = None, response_disposition: str | None = None,
               headers: Mapping[str, str] | None = None) -> tuple[str, dt.datetime]:
    """A V4 signed URL for one object of the clips bucket.

    Args:
        object_name: object path inside ``VIGINT_BUCKET``.
        method: ``"PUT"`` (upload) or ``"GET"`` (download/playback).
        ttl_seconds: lifetime of the URL in seconds (V4 allows at most 7 days).
        content_type: for PUT, the ``Content-Type`` the uploader must send (part of the signature).
        now: signing time (UTC); default the current time.
        response_disposition: for GET, the ``Content-Disposition`` the bucket answers with (signed query
            parameter ``response-content-disposition``), e.g. ``attachment; filename="clip.mp4"``.
        headers: more request headers bound into the signature (``X-Goog-SignedHeaders``): the client must
            send each with exactly this value, e.g. ``Content-MD5``, ``x-goog-content-length-range``,
            ``x-goog-if-generation-match`` (https://cloud.google.com/storage/docs/xml-api/reference-headers).

    Returns:
        ``(url, expires_at)``; ``expires_at`` is a UTC datetime.

    Raises:
        SigningError: no signing credentials are configured.
    """
    s = config.settings()
    now = now or dt.datetime.now(dt.timezone.utc)
    expires_at = now + dt.timedelta(seconds=ttl_seconds)
    url = _blob(object_name).generate_signed_url(
        version="v4",
        method=method,
        expiration=dt.timedelta(seconds=ttl_seconds),
        content_type=content_type,
        response_disposition=response_disposition,
        headers=dict(headers) if headers else None,
        api_access_endpoint=s.storage_endpoint,
        **_signing_kwargs(),
    )
    return url, expires_at.replace(microsecond=0)


@dataclass(frozen=True)
class ObjectInfo:
    """What Cloud Storage says of one stored object (its metadata; no bytes read).

    Attributes:
        name: object name.
        size: bytes.
        md5: base64 MD5 of the bytes (``md5Hash``), None for composite objects.
        crc32c: base64 big-endian CRC32C (``crc32c``).
        generation: the object's generation.
    """

    name: str
    size: int
    md5: str | None
    crc32c: str | None
    generation: int | None


def _info(blob) -> ObjectInfo:
    return ObjectInfo(name=blob.name, size=int(blob.size or 0), md5=blob.md5_hash, crc32c=blob.crc32c,
                      generation=int(blob.generation) if blob.generation is not None else None)


# Metadata GETs of one call run side by side, at most this many at once (one message brings a snapshot, a few
# segments and at most one clip; an end message up to MAX_UPLOAD_FILES files).
METADATA_CONCURRENCY = 8
# One metadata GET: at most 10 s per attempt and 20 s of the client's retries in all (its default is 120 s),
# then the error goes to the caller (ingest raises: Pub/Sub redelivers) instead of holding the message.
METADATA_TIMEOUT_S = 10.0
METADATA_RETRY_S = 20.0


def object_metadata(object_names: Iterable[str]) -> dict[str, ObjectInfo | None]:
    """The metadata of several objects: one ``objects.get`` each, run concurrently.

    Args:
        object_names: object paths inside ``VIGINT_BUCKET``.

    Returns:
        Object name -> ``ObjectInfo``, or None for an object that does not exist.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Cloud Storage failed (other than 404): transient.
    """
    names = list(dict.fromkeys(object_names))
    if not names:
        return {}
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket = clients.storage().bucket(config.settings().bucket)
    retry = DEFAULT_RETRY.with_timeout(METADATA_RETRY_S)

    def one(name: str) -> ObjectInfo | None:
        blob = bucket.get_blob(name, timeout=METADATA_TIMEOUT_S, retry=retry)  # None on 404
        return _info(blob) if blob is not None else None

    if len(names) == 1:
        return {names[0]: one(names[0])}
    with ThreadPoolExecutor(max_workers=min(METADATA_CONCURRENCY, len(names))) as pool:
        return dict(zip(names, pool.map(one, names)))


def stored_objects(prefix: str) -> dict[str, ObjectInfo]:
    """Every object under ``prefix`` (one ``objects.list``, 1,000 names a page).

    Returns:
        Object name -> ``ObjectInfo``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Cloud Storage failed (transient).
    """
    s = config.settings()
    return {b.name: _info(b) for b in clients.storage().list_blobs(s.bucket, prefix=prefix)}


def download(object_name: str, *, max_bytes: int | None = None) -> bytes:
    """The object's bytes.

    Raises:
        google.api_core.exceptions.NotFound: no such object.
        ValueError: the object is larger than ``max_bytes``.
    """
    blob = _blob(object_name)
    if max_bytes is not None:
        blob.reload()
        if blob.size is not None and blob.size > max_bytes:
            raise ValueError(f"{object_name} is {blob.size} bytes, more than {max_bytes}")
    return blob.download_as_bytes()


def redact_url(url: str) -> str:
    """The URL without its query string (which holds the signature): safe to log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
