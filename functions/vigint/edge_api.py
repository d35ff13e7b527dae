"""``edge_api``: the device-authenticated HTTPS API of the edge boxes (docs/contracts.md, "edge_api").

Routes (all POST, JSON):

* ``/v1/uploads``: V4 signed PUT URLs for an event's clip and snapshot, under the device's own prefix; each
  binds ``x-goog-if-generation-match: 0`` (create only, never replace), the declared size
  (``x-goog-content-length-range``) and, when declared, the MD5 (``Content-MD5``): ``upload_headers``. Files
  already stored are not signed again but listed under ``stored`` with their size and hashes.
* ``/v1/publish-credentials``: how the device may publish to ``edge-events`` (emulator mode locally, or a
  short-lived access token of the publish-only service account minted through IAM Credentials).
* ``/v1/heartbeat``: records ``last_heartbeat_at`` (and the reported state) on the device; answers the
  configuration of the device's cameras and zones and its pending commands (``vigint.tenant_api.edge_sync``).
* ``/v1/commands/{command_id}/result``: body ``{"status": "done"|"failed", "detail"?: str, "result"?: object,
  "event_id"?: str|null}``: the outcome of one of the device's commands (``vigint.commands.record_result``);
  answers ``{"command_id", "status"}``. The first result is kept (a repeat answers the stored status). Any
  command id that is not this device's answers the same ``404 {"error": "unknown command"}``.
* ``/v1/enroll`` (no device credentials yet): body ``{"code": str}``, a one-use enrollment code made by the
  tenant API; answers ``{"tenant_id", "device_id", "key_version", "secret"}`` once
  (``provisioning.redeem_enrollment_code``).

Every failure to authenticate (including an unknown, used or expired enrollment code) answers the same
``401 {"error": "unauthorized"}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

from google.cloud import firestore as fs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigint import bodies, clients, commands, config, device_keys, storage
from vigint.schema import (EVENT_FILES, EVENT_ID_PATTERN, MD5_BASE64_PATTERN, SLUG_PATTERN, event_file_rule,
                           event_prefix, matches)

log = logging.getLogger(__name__)

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
TOKEN_LIFETIME_S = 3600  # IAM Credentials' default maximum for generateAccessToken
MAX_BODY_BYTES = 64 * 1024
MAX_UPLOAD_FILES = 32  # files signed in one /v1/uploads call (an end message: clip, snapshot, the last segments)
# A command result body: the result object (at most commands.MAX_RESULT_BYTES) plus room for the other fields.
MAX_RESULT_BODY_BYTES = commands.MAX_RESULT_BYTES + 8 * 1024
_RESULT_PATH = re.compile(r"^/v1/commands/([^/]*)/result$")
_UNKNOWN_COMMAND: JsonResponse = ({"error": "unknown command"}, 404, {})

JsonResponse = tuple[dict, int, dict]
_UNAUTHORIZED: JsonResponse = ({"error": "unauthorized"}, 401, {"WWW-Authenticate": 'Bearer realm="vigint"'})


class TokenMinter(Protocol):
    """Mints an OAuth access token for a service account."""

    def mint(self, service_account: str, scopes: list[str], lifetime_seconds: int) -> tuple[str, dt.datetime]:
        """Returns ``(access_token, expires_at)``; ``expires_at`` in UTC."""


class IamTokenMinter:
    """Mints tokens through IAM Credentials ``generateAccessToken`` (``google.auth.impersonated_credentials``).

    Args:
        source_credentials: credentials allowed to impersonate (``roles/iam.serviceAccountTokenCreator``);
            default: the function's application default credentials.
        iam_endpoint_override: full generateAccessToken URL (tests point it at a local fake).
        request: a ``google.auth.transport.Request``; default a requests-based one.
    """

    def __init__(self, source_credentials=None, iam_endpoint_override: str | None = None, request=None):
        self._source = source_credentials
        self._endpoint = iam_endpoint_override
        self._request = request

    def mint(self, service_account: str, scopes: list[str], lifetime_seconds: int) -> tuple[str, dt.datetime]:
        """See ``TokenMinter.mint``.

        Raises:
            google.auth.exceptions.RefreshError: IAM refused or could not be reached.
        """
        import google.auth
        import google.auth.transport.requests
        from google.auth import impersonated_credentials

        source = self._source
        if source is None:
            source, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds = impersonated_credentials.Credentials(
            source_credentials=source,
            target_principal=service_account,
            target_scopes=scopes,
            lifetime=min(int(lifetime_seconds), TOKEN_LIFETIME_S),
            iam_endpoint_override=self._endpoint,
        )
        creds.refresh(self._request or google.auth.transport.requests.Request())
        expiry = creds.expiry.replace(tzinfo=dt.timezone.utc) if creds.expiry.tzinfo is None else creds.expiry
        return creds.token, expiry


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UploadFile(_Body):
    """One file of ``POST /v1/uploads``: ``md5`` (base64 MD5 of the file) is optional for now, so devices
    that predate it still upload; with it the URL binds ``Content-MD5`` and Cloud Storage refuses other bytes."""

    name: str = Field(max_length=64)
    content_type: str = Field(max_length=100)
    bytes: int = Field(ge=0)
    md5: str | None = Field(default=None, pattern=MD5_BASE64_PATTERN)


class UploadsRequest(_Body):
    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    files: list[UploadFile] = Field(min_length=1, max_length=MAX_UPLOAD_FILES)


class HeartbeatRequest(_Body):
    cameras: dict[str, Any] = Field(default_factory=dict)
    spool: dict[str, Any] = Field(default_factory=dict)
    version: str = Field(default="", max_length=64)


class CommandResultRequest(_Body):
    status: Literal["done", "failed"]
    detail: str | None = Field(default=None, max_length=commands.MAX_DETAIL_CHARS)
    result: dict[str, Any] | None = None
    event_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)


class EnrollRequest(_Body):
    code: str = Field(min_length=1, max_length=64)


class _BadRequest(Exception):
    def __init__(self, status: int, error: str, field: str | None = None):
        super().__init__(error)
        self.status, self.error, self.field = status, error, field

    def response(self) -> JsonResponse:
        body = {"error": self.error}
        if self.field is not None:
            body["field"] = self.field
        return body, self.status, {}


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def authenticate(headers: Mapping[str, str]):
    """Checks the device's bearer secret.

    Returns:
        The device's Firestore ``DocumentReference`` if the tenant and device exist, the device is active
        and the secret matches its current key version, and the tenant was not deleted since (a tombstone
        ``deleted_tenants/{t}``, ``vigint.retention``: a device still listed while the deletion runs, or one
        at a key version the deleted tenant's device of that id already had, is refused); None otherwise (the
        caller answers 401). The device and the tombstone are read together (one ``get_all``).
    """
    auth = headers.get("Authorization", "")
    tenant_id = headers.get("X-Vigint-Tenant", "")
    device_id = headers.get("X-Vigint-Device", "")
    presented = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    master = config.settings().device_key_secret.get_secret_value()
    ids_ok = matches(SLUG_PATTERN, tenant_id) and matches(SLUG_PATTERN, device_id)
    ref, data = None, None
    tomb = None
    if ids_ok:
        from vigint import retention

        ref = clients.firestore().collection("tenants").document(tenant_id).collection("devices").document(device_id)
        tomb_ref = retention.deleted_tenant_ref(tenant_id)
        snaps = {snap.reference.path: snap for snap in clients.firestore().get_all([ref, tomb_ref])}
        snap = snaps.get(ref.path)
        data = snap.to_dict() if snap is not None and snap.exists else None
        t_snap = snaps.get(tomb_ref.path)
        tomb = t_snap.to_dict() if t_snap is not None and t_snap.exists else None
    key_version = int((data or {}).get("key_version") or 1)
    # Always derive and compare, so unknown devices cost the same as known ones.
    expected = device_keys.derive_secret(master, tenant_id, device_id, key_version)
    secret_ok = device_keys.secrets_equal(presented, expected) and bool(presented)
    if data is None or data.get("status") != "active" or not secret_ok or _of_deleted_tenant(data, tomb, device_id):
        log.info("edge_api: unauthorized request (tenant=%r device=%r)", tenant_id[:63], device_id[:63])
        return None
    return ref


def _of_deleted_tenant(device: dict, tomb: dict | None, device_id: str) -> bool:
    """True if ``device`` belongs to the deleted tenant of the tombstone ``tomb``: created before its deletion,
    or at a key version at or below the one recorded for that device id (its old secret)."""
    if not tomb:
        return False
    from vigint import pipeline

    deleted_at = pipeline.as_utc(tomb.get("deleted_at"))
    created = pipeline.as_utc(device.get("created_at"))
    if deleted_at is not None and (created is None or created <= deleted_at):
        return True
    try:
        return int(device.get("key_version") or 1) <= int((tomb.get("key_versions") or {}).get(device_id) or 0)
    except (TypeError, ValueError):
        return True


def handle(*, method: str, path: str, headers: Mapping[str, str], body: bytes,
           token_minter: TokenMinter | None = None, now: dt.datetime | None = None) -> JsonResponse:
    """Serves one edge_api request.

    Args:
        method: HTTP method.
        path: request path, e.g. ``/v1/uploads`` or ``/v1/commands/{command_id}/result``.
        headers: request headers (case-insensitive mapping, e.g. werkzeug's).
        body: raw request body.
        token_minter: mints publisher tokens outside the emulator (default ``IamTokenMinter()``).
        now: current time (UTC), for tests.

    Returns:
        ``(json_body, status, headers)``, which Flask turns into a JSON response.
    """
    routes = {"/v1/uploads": _uploads, "/v1/publish-credentials": _publish_credentials, "/v1/heartbeat": _heartbeat,
              "/v1/enroll": _enroll}
    path = path.rstrip("/") or "/"
    route, params = routes.get(path), {}
    if route is None and (match := _RESULT_PATH.match(path)):
        route, params = _command_result, {"command_id": match.group(1)}
    if route is None:
        return {"error": "not found"}, 404, {}
    if method != "POST":
        return {"error": "method not allowed"}, 405, {"Allow": "POST"}
    device = None if route is _enroll else authenticate(headers)
    if device is None and route is not _enroll:
        return _UNAUTHORIZED
    try:
        payload = bodies.parse_json_object(
            body or b"{}", max_bytes=MAX_RESULT_BODY_BYTES if route is _command_result else MAX_BODY_BYTES)
    except bodies.BodyError as exc:
        if exc.reason == "too_large":
            return {"error": "request body too large", "field": "body"}, 413, {}
        return {"error": f"body is not a JSON object: {exc.message}", "field": "body"}, 400, {}
    try:
        return route(device=device, payload=payload, token_minter=token_minter,
                     now=now or dt.datetime.now(dt.timezone.utc), **params)
    except _BadRequest as exc:
        return exc.response()


def _validate(model: type[BaseModel], payload: dict) -> BaseModel:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise _BadRequest(400, f"{field}: {err['msg']}", field) from None


def _uploads(*, device, payload: dict, now: dt.datetime, **_) -> JsonResponse:
    req = _validate(UploadsRequest, payload)
    tenant_id = device.parent.parent.id
    prefix = event_prefix(tenant_id, device.id, req.event_id)
    seen: set[str] = set()
    uploads = []
    for i, f in enumerate(req.files):
        allowed = event_file_rule(f.name)
        if allowed is None:
            raise _BadRequest(400, f"file name must be one of {sorted(EVENT_FILES)}, segments/NNNNN.ts or "
                                   "snapshots/NNNNN.jpg", f"files.{i}.name")
        if f.name in seen:
            raise _BadRequest(400, f"{f.name} listed twice", f"files.{i}.name")
        seen.add(f.name)
        content_type, limit = allowed
        if f.content_type != content_type:
            raise _BadRequest(400, f"{f.name} must be {content_type}", f"files.{i}.content_type")
        if f.bytes > limit:
            raise _BadRequest(413, f"{f.name} is larger than {limit} bytes", f"files.{i}.bytes")
    ttl = config.settings().upload_url_ttl_seconds
    # What is already stored under the event's prefix (one objects.list), looked up while the URLs are signed:
    # a stored object is never handed out again, so no URL of ours can replace evidence.
    with ThreadPoolExecutor(max_workers=1) as pool:
        stored_future = pool.submit(storage.stored_objects, prefix)
        signed = [(f, *storage.signed_url(prefix + f.name, method="PUT", ttl_seconds=ttl,
                                          content_type=f.content_type, headers=upload_headers(f), now=now))
                  for f in req.files]
        stored_now = stored_future.result()
    stored = []
    for f, url, expires_at in signed:
        obj = prefix + f.name
        if (info := stored_now.get(obj)) is not None:
            stored.append({"name": f.name, "object": obj, "bytes": info.size, "md5": info.md5,
                           "crc32c": info.crc32c})
            continue
        uploads.append({"name": f.name, "object": obj, "url": url, "method": "PUT",
                        "headers": {"Content-Type": f.content_type, **upload_headers(f)},
                        "expires_at": _rfc3339(expires_at)})
    log.info("edge_api: %d upload URLs for %s (%d already stored)", len(uploads), prefix, len(stored))
    return {"uploads": uploads, "stored": stored}, 200, {}


def upload_headers(f: UploadFile) -> dict[str, str]:
    """The headers bound into a file's signed PUT URL besides ``Content-Type`` (the device must send them).

    * ``x-goog-if-generation-match: 0``: Cloud Storage refuses the PUT with ``412 Precondition Failed`` if
      the object exists, so a URL can create the object but never replace it
      (https://cloud.google.com/storage/docs/request-preconditions,
      https://cloud.google.com/storage/docs/xml-api/reference-headers#xgoogifgenerationmatch).
    * ``x-goog-content-length-range: N,N`` with N the declared bytes: any other size is refused with 400
      (https://cloud.google.com/storage/docs/xml-api/reference-headers#xgoogcontentlengthrange); N is at most
      the file's limit (``event_file_rule``), checked before signing.
    * ``Content-MD5`` when the device declared ``md5``: Cloud Storage refuses bytes of another MD5 with
      ``400 BadDigest`` (https://cloud.google.com/storage/docs/xml-api/reference-headers#contentmd5).

    Returns:
        Header name -> value.
    """
    headers = {"x-goog-if-generation-match": "0", "x-goog-content-length-range": f"{f.bytes},{f.bytes}"}
    if f.md5 is not None:
        headers["Content-MD5"] = f.md5
    return headers


def _publish_credentials(*, device, token_minter: TokenMinter | None, **_) -> JsonResponse:
    s = config.settings()
    topic = f"projects/{s.project}/topics/{s.edge_events_topic}"
    if s.pubsub_emulator_host:
        return {"topic": topic, "mode": "emulator"}, 200, {}
    if not s.publisher_service_account:
        log.error("edge_api: VIGINT_PUBLISHER_SERVICE_ACCOUNT is not set; cannot vend publish credentials")
        return {"error": "publish credentials unavailable"}, 503, {}
    minter = token_minter or IamTokenMinter()
    try:
        token, expires_at = minter.mint(s.publisher_service_account, [PUBSUB_SCOPE], TOKEN_LIFETIME_S)
    except Exception as exc:  # noqa: BLE001 - any IAM failure is a 503 to the device, which retries
        log.error("edge_api: minting a publisher token failed: %s", type(exc).__name__)
        return {"error": "publish credentials unavailable"}, 503, {}
    log.info("edge_api: publisher token vended to %s/%s", device.parent.parent.id, device.id)
    return {"mode": "access_token", "access_token": token, "expires_at": _rfc3339(expires_at), "topic": topic}, 200, {}


def _heartbeat(*, device, payload: dict, now: dt.datetime, **_) -> JsonResponse:
    req = _validate(HeartbeatRequest, payload)
    state = req.model_dump()
    # Stored as-is in the map ``last_heartbeat``: every value must be one Firestore can store.
    for name in ("cameras", "spool"):
        try:
            bodies.check_firestore_value(state[name], name, depth=1)
        except bodies.BodyError as exc:
            raise _BadRequest(400, str(exc), exc.field) from None
    if len(json.dumps(state, default=str)) > 32 * 1024:
        raise _BadRequest(413, "heartbeat state larger than 32 KiB", None)
    device.update({"last_heartbeat_at": fs.SERVER_TIMESTAMP, "last_heartbeat": state})
    from vigint.tenant_api import edge_sync

    config_ = edge_sync.device_config(device.parent.parent.id, device.id)
    pending = edge_sync.take_pending_commands(device, now)
    return {"config": config_, "commands": pending}, 200, {}


def _command_result(*, device, payload: dict, now: dt.datetime, command_id: str, **_) -> JsonResponse:
    req = _validate(CommandResultRequest, payload)
    result_text = commands.result_json(req.result)
    if result_text is not None and len(result_text.encode()) > commands.MAX_RESULT_BYTES:
        raise _BadRequest(413, f"result is larger than {commands.MAX_RESULT_BYTES} bytes as JSON", "result")
    status = commands.record_result(device, command_id, status=req.status, detail=req.detail, result=req.result,
                                    event_id=req.event_id, now=now)
    if status is None:
        return _UNKNOWN_COMMAND
    return {"command_id": command_id, "status": status}, 200, {}


def _enroll(*, payload: dict, now: dt.datetime, **_) -> JsonResponse:
    from vigint import provisioning

    req = _validate(EnrollRequest, payload)
    creds = provisioning.redeem_enrollment_code(req.code, now=now)
    if creds is None:
        return _UNAUTHORIZED
    return creds, 200, {}
