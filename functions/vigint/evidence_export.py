"""Evidence export: one event as a signed, self-checking zip package, and its offline verification.

``export_event`` writes ``tenants/{t}/exports/{export_id}.zip`` to the clips bucket and returns a short-lived
signed GET URL of it (``EXPORT_URL_TTL_S``). The package holds::

    event.json          the event record: times, labels, detections, verdicts (analysis), the alert decision
    clip.mp4            the event's clip, if it has one; otherwise its HLS segments as segments/NNNNN.ts
    snapshot.jpg        the event's snapshot, if any
    access_log.json     the event's links: recipient, created/expiry, revocation (when, by whom), accesses of each
    manifest.json       {"format", "tenant_id", "event_id", "export_id", "created_at", "created_by",
                         "signature": {"algorithm", "key_id"},
                         "files": [{"name", "bytes", "sha256", "stored_sha256"?}]}  (sha256 in lower-case hex)
    manifest.json.sig   base64 of the DER ECDSA P-256 / SHA-256 signature over the exact bytes of manifest.json
    public_key.pem      the signing public key (convenience only: verify against the tenant's key,
                        ``GET /v1/export-key``)

``stored_sha256`` is the hash the device declared for that object when it sent the event; a file whose bytes
differ from it is still exported (it is the evidence we hold) and ``manifest.json`` lists it in
``mismatches``. The signer is ``vigint.export_signing.signer()`` (Cloud KMS in Google Cloud, a local key on the
stack).

Objects are streamed: each is read from the bucket in chunks, hashed and written into the zip, which is itself
uploaded as it is written (a resumable upload): a 512 MiB clip never sits in memory, and a Cloud Function's
``/tmp`` is memory too (https://cloud.google.com/functions/docs/concepts/execution-environment#memory-file-system).

``verify(path, public_key_pem)`` needs only the ``cryptography`` package and no network (``python -m
vigint.admin verify-export FILE [--public-key PEM]``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
import zipfile
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import audit, clients, config, export_signing, links, pipeline, storage

log = logging.getLogger(__name__)

FORMAT = "vigint-evidence/1"
EXPORT_URL_TTL_S = 900  # the package's signed GET URL: 15 minutes
CHUNK = 1024 * 1024
MAX_ACCESSES_PER_LINK = 1000
SIGNATURE_FILE = "manifest.json.sig"
PUBLIC_KEY_FILE = "public_key.pem"
META_FILES = {"manifest.json", SIGNATURE_FILE, PUBLIC_KEY_FILE}


class ExportError(ValueError):
    """The event cannot be exported; ``status`` is the HTTP answer (404 unknown event, 503 no signer)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return pipeline.as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


# Internal bookkeeping of the event document that is no evidence.
_INTERNAL = {"claims", "published", "message_id", "hold_objects_pending", "held_expire_at", "expire_at"}


def event_record(event: Mapping[str, Any]) -> dict:
    """The event document without internal bookkeeping, as JSON-ready values (times RFC 3339 UTC)."""
    return _jsonable({k: v for k, v in event.items() if k not in _INTERNAL})


def access_log(tenant_id: str, event_id: str) -> list[dict]:
    """Every link of the event (oldest first, ``links.of_event``) with its revocation (when, by whom) and its
    accesses (oldest first, the newest ``MAX_ACCESSES_PER_LINK`` of each, ``links.accesses``; ``access_count``
    counts them all). No token is stored anywhere, so none can be exported."""
    out = []
    for d in links.of_event(tenant_id, event_id):
        log_ = links.accesses(d["id"], recent=MAX_ACCESSES_PER_LINK)
        out.append({"link_id": d["id"], "recipient": d.get("recipient"), "created_at": d.get("created_at"),
                    "expires_at": d.get("expires_at"), "revoked": bool(d.get("revoked")),
                    "revoked_at": d.get("revoked_at"), "revoked_by": d.get("revoked_by"),
                    "access_count": log_["count"], "accesses": list(reversed(log_["recent"]))})
    return _jsonable(out)


def _media(tenant_id: str, event_id: str, event: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """``(name in the package, object, declared sha256)`` of the event's media."""
    files = []
    clip = event.get("clip") or {}
    if clip.get("object"):
        files.append(("clip.mp4", clip["object"], clip.get("sha256")))
    else:  # a version 2 event without its final clip (still recorded, or interrupted): its segments
        segs = pipeline.event_ref(tenant_id, event_id).collection("segments").stream()
        for seg in sorted(segs, key=lambda s: s.id):
            d = seg.to_dict() or {}
            if d.get("object"):
                files.append((f"segments/{int(d.get('index', 0)):05d}.ts", d["object"], d.get("sha256")))
    snap = event.get("snapshot") or {}
    if snap.get("object"):
        files.append(("snapshot.jpg", snap["object"], snap.get("sha256")))
    return files


def _write_stream(zf: zipfile.ZipFile, name: str, chunks) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    with zf.open(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as out:
        for chunk in chunks:
            h.update(chunk)
            n += len(chunk)
            out.write(chunk)
    return n, h.hexdigest()


def _object_chunks(object_name: str):
    blob = clients.storage().bucket(config.settings().bucket).blob(object_name)
    with blob.open("rb", chunk_size=CHUNK) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def build_package(out, *, tenant_id: str, event_id: str, event: Mapping[str, Any], export_id: str,
                  created_by: Mapping[str, str], now: dt.datetime, signer=None) -> dict:
    """Writes the package (see the module docstring) as a zip into the binary file object ``out``.

    Returns:
        The manifest (dict).

    Raises:
        vigint.export_signing.SigningUnavailable: no signing key.
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS failed.
    """
    signer = signer or export_signing.signer()
    pem = signer.public_key_pem()
    files, mismatches = [], []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in (("event.json", event_record(event)), ("access_log.json", access_log(tenant_id, event_id))):
            raw = json.dumps(data, indent=2, sort_keys=True).encode()
            size, digest = _write_stream(zf, name, [raw])
            files.append({"name": name, "bytes": size, "sha256": digest})
        for name, obj, declared in _media(tenant_id, event_id, event):
            try:
                size, digest = _write_stream(zf, name, _object_chunks(obj))
            except gexc.NotFound:
                log.warning("export %s/%s: %s is missing from the bucket", tenant_id, event_id, obj)
                mismatches.append({"name": name, "problem": "object missing"})
                continue
            entry = {"name": name, "bytes": size, "sha256": digest}
            if declared:
                entry["stored_sha256"] = declared
                if declared != digest:
                    mismatches.append({"name": name, "problem": "sha256 differs from the one the device declared"})
            files.append(entry)
        manifest = {"format": FORMAT, "tenant_id": tenant_id, "event_id": event_id, "export_id": export_id,
                    "created_at": _jsonable(now), "created_by": dict(created_by),
                    "signature": {"algorithm": signer.algorithm, "key_id": export_signing.key_id(pem),
                                  "file": SIGNATURE_FILE},
                    "files": files, "mismatches": mismatches}
        raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
        zf.writestr(zipfile.ZipInfo("manifest.json", date_time=(1980, 1, 1, 0, 0, 0)), raw)
        zf.writestr(zipfile.ZipInfo(SIGNATURE_FILE, date_time=(1980, 1, 1, 0, 0, 0)),
                    base64.b64encode(signer.sign(raw)) + b"\n")
        zf.writestr(zipfile.ZipInfo(PUBLIC_KEY_FILE, date_time=(1980, 1, 1, 0, 0, 0)), pem.encode())
    return manifest


def export_event(tenant_id: str, event_id: str, *, actor: Mapping[str, str], now: dt.datetime | None = None) -> dict:
    """Builds the event's package in the bucket and returns where to fetch it; one audit entry
    (``event.export``).

    Returns:
        ``{"export_id", "event_id", "object", "url", "expires_at", "bytes", "files", "manifest_sha256",
        "key_id", "mismatches"}``; ``url`` is a signed GET URL valid ``EXPORT_URL_TTL_S`` seconds (never log it).

    Raises:
        ExportError: 404 the event does not exist (or is a placeholder), 503 no signing key configured.
        google.api_core.exceptions.GoogleAPICallError: Firestore/GCS/KMS failed (transient).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    snap = pipeline.event_ref(tenant_id, event_id).get()
    event = snap.to_dict() if snap.exists else None
    if not event or "event_id" not in event:
        raise ExportError(404, "event not found")
    try:
        signer = export_signing.signer()
    except export_signing.SigningUnavailable as exc:
        log.error("export: %s", exc)
        raise ExportError(503, "evidence export signing is not configured") from None
    export_id = f"exp_{now.strftime('%Y%m%dT%H%M%SZ')}_{secrets.token_hex(6)}"
    object_name = f"tenants/{tenant_id}/exports/{export_id}.zip"
    blob = clients.storage().bucket(config.settings().bucket).blob(object_name)
    with blob.open("wb", content_type="application/zip", chunk_size=8 * CHUNK, ignore_flush=True) as out:
        manifest = build_package(out, tenant_id=tenant_id, event_id=event_id, event=event, export_id=export_id,
                                 created_by=actor, now=now, signer=signer)
    blob.reload()
    url, expires_at = storage.signed_url(object_name, method="GET", ttl_seconds=EXPORT_URL_TTL_S, now=now,
                                         response_disposition=f'attachment; filename="{export_id}.zip"')
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    out = {"export_id": export_id, "event_id": event_id, "object": object_name, "url": url, "expires_at": expires_at,
           "bytes": int(blob.size or 0), "files": len(manifest["files"]),
           "manifest_sha256": hashlib.sha256(raw).hexdigest(), "key_id": manifest["signature"]["key_id"],
           "mismatches": len(manifest["mismatches"])}
    audit.record(tenant_id, actor=actor, action="event.export", target_kind="event", target_id=event_id,
                 details={"export_id": export_id, "files": out["files"], "bytes": out["bytes"],
                          "manifest_sha256": out["manifest_sha256"], "key_id": out["key_id"]}, now=now)
    log.info("export: %s/%s -> %s (%d files, %d bytes)", tenant_id, event_id, object_name, out["files"], out["bytes"])
    return out


def public_key() -> dict:
    """``{"algorithm", "key_id", "public_key_pem"}`` of the export signer.

    Raises:
        ExportError: 503 no signing key configured.
    """
    try:
        signer = export_signing.signer()
    except export_signing.SigningUnavailable:
        raise ExportError(503, "evidence export signing is not configured") from None
    pem = signer.public_key_pem()
    return {"algorithm": signer.algorithm, "key_id": export_signing.key_id(pem), "public_key_pem": pem}


# ----------------------------------------------------------------------------------------- offline check


def verify(package, public_key_pem: str | None = None) -> tuple[list[str], dict | None]:
    """Checks a package offline: the signature over ``manifest.json`` and every listed file's size and SHA-256,
    and that the package holds no file the manifest does not list.

    Args:
        package: a path or a binary file object of the zip.
        public_key_pem: the tenant's export key (PEM); None: the package's own ``public_key.pem`` is used,
            which proves integrity but not who signed (the result says so).

    Returns:
        ``(problems, manifest)``: ``problems`` is empty when the package verifies; ``manifest`` is None when it
        could not be read.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    problems: list[str] = []
    try:
        zf = zipfile.ZipFile(package)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"not a readable zip: {exc}"], None
    with zf:
        names = set(zf.namelist())
        try:
            raw = zf.read("manifest.json")
            manifest = json.loads(raw)
            signature = base64.b64decode(zf.read(SIGNATURE_FILE), validate=False)
        except (KeyError, ValueError) as exc:
            return [f"manifest or signature missing or unreadable: {exc}"], None
        pem = public_key_pem
        if pem is None:
            problems_note = "signature checked with the package's own public_key.pem (pass --public-key to " \
                            "check it against the tenant's key)"
            try:
                pem = zf.read(PUBLIC_KEY_FILE).decode()
            except KeyError:
                return ["no public key given and none in the package"], manifest
        else:
            problems_note = None
        try:
            key = serialization.load_pem_public_key(pem.encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError("not an EC public key")
            key.verify(signature, raw, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            problems.append("signature: manifest.json does not match its signature under this key")
        except ValueError as exc:
            problems.append(f"public key unusable: {exc}")
        listed = set()
        for f in manifest.get("files") or []:
            name = f.get("name")
            listed.add(name)
            if name not in names:
                problems.append(f"{name}: listed in the manifest but missing")
                continue
            h, n = hashlib.sha256(), 0
            try:
                with zf.open(name) as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        n += len(chunk)
            except (zipfile.BadZipFile, OSError) as exc:  # e.g. "Bad CRC-32": bytes changed inside the zip
                problems.append(f"{name}: unreadable or altered in the package ({exc})")
                continue
            if n != f.get("bytes"):
                problems.append(f"{name}: {n} bytes, manifest says {f.get('bytes')}")
            if h.hexdigest() != f.get("sha256"):
                problems.append(f"{name}: sha256 {h.hexdigest()} differs from the manifest's {f.get('sha256')}")
        for extra in sorted(names - listed - META_FILES):
            problems.append(f"{extra}: in the package but not in the manifest")
    if problems_note and not problems:
        manifest = {**manifest, "note": problems_note}
    return problems, manifest
