"""Client of the cloud's device-authenticated ``edge_api`` (wire format: docs/contracts.md, "edge_api").

Every request carries ``Authorization: Bearer <secret>``, ``X-Vigint-Tenant`` and ``X-Vigint-Device``.
Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter (tenacity), a
bounded number of times; then ``TransientApiError`` is raised. Any other 4xx is final at once:
``AuthError`` for 401/403 (the device's credentials, not one event, are the problem) and
``PermanentApiError`` otherwise. Neither the secret nor a signed URL is ever logged or put in an exception.

Command results (``POST /v1/commands/{command_id}/result``) use fewer attempts and shorter waits
(``result_max_attempts``, ``result_backoff_max_s``): a result is advisory and must not hold up the heartbeat
that delivered the command.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

COMMAND_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"  # a Firestore auto id is 20 of these; no "/" or ".."
MAX_RESULT_DETAIL_CHARS = 500
MAX_RESULT_BYTES = 64 * 1024  # the result object, as compact UTF-8 JSON

__all__ = [
    "ApiError",
    "AuthError",
    "CommandResult",
    "EdgeApiClient",
    "PermanentApiError",
    "PublishCredentials",
    "StoredObject",
    "TransientApiError",
    "UploadFile",
    "UploadTarget",
    "is_transient",
]


class ApiError(Exception):
    """An ``edge_api`` call failed.

    Attributes:
        status: HTTP status, or None when no response arrived.
        error: the ``error`` field of the answer, if any.
        field: the ``field`` field of a 400 answer, if any.
    """

    def __init__(self, message: str, status: int | None = None, error: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.field = field


class TransientApiError(ApiError):
    """Retries ran out on connection errors, timeouts, 429 or 5xx; trying later may work."""


class PermanentApiError(ApiError):
    """The request was refused (4xx other than 429) or the answer was malformed; retrying will not help."""


class AuthError(PermanentApiError):
    """401/403: the device is unknown, revoked or has the wrong secret. Affects every request."""


class UploadFile(BaseModel):
    """One file the device wants to upload (``files[]`` of ``POST /v1/uploads``).

    Attributes:
        name: file name in the event (``clip.mp4``, ``segments/00000.ts``, ...).
        content_type: its MIME type.
        bytes: its size; the URL binds it (``x-goog-content-length-range``).
        md5: base64 MD5 of the file; the URL then binds it (``Content-MD5``). Left out of the request when None.
    """

    name: str
    content_type: str
    bytes: int = Field(ge=0)
    md5: str | None = None


class StoredObject(BaseModel):
    """A requested file that the bucket already holds (``stored[]`` of the ``POST /v1/uploads`` answer): no URL
    is handed out for it. The device compares ``bytes`` and ``md5`` with its own file."""

    model_config = ConfigDict(extra="ignore")

    name: str
    object: str
    bytes: int
    md5: str | None = None
    crc32c: str | None = None


class UploadTarget(BaseModel):
    """Where to PUT one file: a V4 signed URL (its query string is a credential: never log it)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    object: str
    url: SecretStr
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime | None = None


class PublishCredentials(BaseModel):
    """What ``POST /v1/publish-credentials`` returns.

    Attributes:
        topic: full topic path ``projects/{p}/topics/edge-events``.
        mode: ``"emulator"`` (local stack) or ``"access_token"`` (Google Cloud).
        access_token: OAuth2 access token of the publish-only service account (``access_token`` mode).
        expires_at: when the token expires (aware, UTC).
    """

    model_config = ConfigDict(extra="ignore")

    topic: str
    mode: Literal["emulator", "access_token"]
    access_token: SecretStr | None = None
    expires_at: datetime | None = None


class CommandResult(BaseModel):
    """The body of ``POST /v1/commands/{command_id}/result``.

    Attributes:
        status: ``"done"`` or ``"failed"``.
        detail: a human-readable line, at most 500 characters.
        result: any JSON object, at most 64 KiB as compact UTF-8 JSON.
        event_id: the event the command produced (``request_clip``), else None.

    Raises:
        pydantic.ValidationError: on construction with a bad field (``ValueError`` subclass), including a
            ``result`` larger than 64 KiB.
    """

    model_config = ConfigDict(extra="forbid")

    status: Literal["done", "failed"]
    detail: str = Field(default="", max_length=MAX_RESULT_DETAIL_CHARS)
    result: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$")

    @field_validator("result")
    @classmethod
    def _small(cls, result: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(result, separators=(",", ":"), default=str).encode("utf-8"))
        if size > MAX_RESULT_BYTES:
            raise ValueError(f"result is {size} bytes of JSON, more than {MAX_RESULT_BYTES}")
        return result


def _retry_after(exc: BaseException) -> float:
    resp = getattr(exc, "response", None)
    if resp is None:
        return 0.0
    try:
        return max(0.0, float(resp.headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: connection errors, timeouts, HTTP 429 and 5xx."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


def retrying(max_attempts: int, initial_s: float, max_s: float, what: str = "edge_api") -> Retrying:
    """A tenacity ``Retrying`` for HTTP calls: transient errors only, exponential backoff with jitter.

    Honours a ``Retry-After`` header (seconds, capped at ``max_s``) when it asks for a longer wait.

    Args:
        max_attempts: attempts in total (first try included).
        initial_s: first backoff in seconds.
        max_s: largest single wait in seconds.
        what: what is being called, for the retry log line.
    """
    backoff = wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(backoff(state), min(max_s, _retry_after(exc)) if exc else 0.0)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        log.warning("%s: attempt %d failed (%s), retrying in %.1f s", what, state.attempt_number,
                    _describe(exc), state.next_action.sleep if state.next_action else 0.0)

    return Retrying(stop=stop_after_attempt(max_attempts), wait=wait, retry=retry_if_exception(is_transient),
                    before_sleep=before_sleep, reraise=True)


def _describe(exc: BaseException | None) -> str:
    """A loggable description of a requests failure (no URL: signed URLs carry credentials)."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ if exc is not None else "unknown"


class EdgeApiClient:
    """Calls ``edge_api`` as one device.

    Args:
        base_url: the function's base URL (e.g. ``https://REGION-PROJECT.cloudfunctions.net/edge_api`` or
            ``http://127.0.0.1:8514`` locally); paths ``/v1/...`` are appended.
        tenant_id: tenant slug.
        device_id: device slug.
        secret: the device secret (docs/contracts.md, "Device credentials"); never logged.
        session: HTTP session (a new ``requests.Session`` if None).
        timeout: seconds per request (connect and read).
        max_attempts: attempts per call for transient failures.
        backoff_initial_s: first retry wait in seconds.
        backoff_max_s: longest retry wait in seconds.
        result_max_attempts: attempts per command result (``command_result``).
        result_backoff_max_s: longest wait between command-result attempts, seconds.
    """

    def __init__(self, base_url: str, tenant_id: str, device_id: str, secret: str,
                 session: requests.Session | None = None, timeout: float = 10, *, max_attempts: int = 5,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, result_max_attempts: int = 3,
                 result_backoff_max_s: float = 2.0) -> None:
        if not secret:
            raise ValueError("device secret is empty")
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.device_id = device_id
        self._secret = SecretStr(secret)
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.result_max_attempts = result_max_attempts
        self.result_backoff_max_s = result_backoff_max_s

    def __repr__(self) -> str:
        return f"EdgeApiClient({self.base_url!r}, tenant={self.tenant_id!r}, device={self.device_id!r})"

    # ---------------------------------------------------------------------------------------- calls
    def request_uploads(self, event_id: str, files: list[UploadFile | dict]) -> list[UploadTarget]:
        """``POST /v1/uploads``: signed PUT URLs for an event's files (``uploads`` without what is stored).

        Returns:
            One target per requested file that is not stored yet, in the server's order.

        Raises:
            As ``uploads``.
        """
        return self.uploads(event_id, files)[0]

    def uploads(self, event_id: str, files: list[UploadFile | dict]) -> tuple[list[UploadTarget], list[StoredObject]]:
        """``POST /v1/uploads``: signed PUT URLs for an event's files, and which of them the bucket already holds.

        Each URL binds the headers in its target's ``headers`` (send them all, unchanged): the content type,
        ``x-goog-if-generation-match: 0`` (the PUT can only create the object), the size and, if declared, the
        MD5. A file already stored gets no URL but a ``StoredObject`` (its size and hashes) instead.

        Args:
            event_id: the event id.
            files: ``UploadFile``s (or dicts with ``name``, ``content_type``, ``bytes``, optional ``md5``).

        Returns:
            ``(targets, stored)``: every requested file is in exactly one of the two.

        Raises:
            PermanentApiError: 400/413 (bad name, type or size) or a malformed answer.
            AuthError: 401/403.
            TransientApiError: retries exhausted.
        """
        body = {"event_id": event_id,
                "files": [UploadFile.model_validate(f).model_dump(exclude_none=True) for f in files]}
        answer = self._post("/v1/uploads", body)
        try:
            targets = [UploadTarget.model_validate(u) for u in answer["uploads"]]
            stored = [StoredObject.model_validate(u) for u in answer.get("stored") or []]
        except (AttributeError, KeyError, TypeError, ValidationError) as exc:
            raise PermanentApiError(f"malformed /v1/uploads answer: {exc}") from None
        wanted = {f["name"] for f in body["files"]}
        answered = [t.name for t in targets] + [o.name for o in stored]
        if sorted(answered) != sorted(wanted):
            raise PermanentApiError(f"/v1/uploads answered for {sorted(answered)}, asked for {sorted(wanted)}")
        return targets, stored

    def publish_credentials(self) -> PublishCredentials:
        """``POST /v1/publish-credentials``: the topic and how to publish to it.

        Raises:
            PermanentApiError, AuthError, TransientApiError: as for ``request_uploads``.
        """
        answer = self._post("/v1/publish-credentials", {})
        try:
            creds = PublishCredentials.model_validate(answer)
        except ValidationError as exc:
            raise PermanentApiError(f"malformed /v1/publish-credentials answer: {exc}") from None
        if creds.mode == "access_token" and (creds.access_token is None or creds.expires_at is None):
            raise PermanentApiError("access_token mode without access_token/expires_at")
        return creds

    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/heartbeat`` with ``{"cameras": ..., "spool": ..., "version": ...}``.

        Returns:
            The answer, ``{"config": {...}, "commands": [...]}``.

        Raises:
            PermanentApiError, AuthError, TransientApiError: as for ``request_uploads``.
        """
        return self._post("/v1/heartbeat", payload)

    def command_result(self, command_id: str, result: CommandResult | dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/commands/{command_id}/result``: the outcome of a command from a heartbeat answer.

        Retried on transient failures at most ``result_max_attempts`` times, waits capped at
        ``result_backoff_max_s`` seconds (so with the default 10 s timeout at most about 35 s in all).

        Args:
            command_id: the command's id from the heartbeat answer.
            result: a ``CommandResult`` or a dict of its fields; a longer ``detail`` is cut to 500 characters.

        Returns:
            The answer, ``{"command_id": str, "status": "done"|"failed"}``.

        Raises:
            ValueError: ``command_id`` is not a plain id, or ``result`` is not a valid ``CommandResult``
                (e.g. ``result`` larger than 64 KiB).
            PermanentApiError: 404 (the cloud does not know the command; ``status`` is 404), 400, or a
                malformed answer; retrying will not help.
            AuthError: 401/403.
            TransientApiError: retries exhausted.
        """
        if not isinstance(command_id, str) or not re.match(COMMAND_ID_PATTERN, command_id):
            raise ValueError(f"command_id {command_id!r} is not a plain id ({COMMAND_ID_PATTERN})")
        if isinstance(result, dict):
            result = {**result, "detail": str(result.get("detail") or "")[:MAX_RESULT_DETAIL_CHARS]}
        body = CommandResult.model_validate(result).model_dump(mode="json")
        return self._post(f"/v1/commands/{command_id}/result", body, max_attempts=self.result_max_attempts,
                          backoff_max_s=self.result_backoff_max_s)

    # ------------------------------------------------------------------------------------ transport
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._secret.get_secret_value()}",
            "X-Vigint-Tenant": self.tenant_id,
            "X-Vigint-Device": self.device_id,
        }

    def _post(self, path: str, body: dict[str, Any], *, max_attempts: int | None = None,
              backoff_max_s: float | None = None) -> dict[str, Any]:
        url = self.base_url + path
        attempts = max_attempts or self.max_attempts
        backoff_max_s = self.backoff_max_s if backoff_max_s is None else backoff_max_s

        def once() -> requests.Response:
            resp = self.session.post(url, json=body, headers=self._headers(), timeout=self.timeout)
            if resp.status_code == 429 or resp.status_code >= 500:
                raise requests.HTTPError(f"HTTP {resp.status_code}", response=resp)
            return resp

        try:
            resp = retrying(attempts, min(self.backoff_initial_s, backoff_max_s), backoff_max_s)(once)
        except requests.RequestException as exc:
            status = exc.response.status_code if getattr(exc, "response", None) is not None else None
            raise TransientApiError(f"{path}: {_describe(exc)} after {attempts} attempts",
                                    status=status) from None
        if resp.status_code >= 400:
            try:
                info = resp.json()
            except ValueError:
                info = {}
            info = info if isinstance(info, dict) else {}
            error, field = info.get("error"), info.get("field")
            cls = AuthError if resp.status_code in (401, 403) else PermanentApiError
            detail = f" ({error}{', field ' + str(field) if field else ''})" if error else ""
            raise cls(f"{path}: HTTP {resp.status_code}{detail}", status=resp.status_code, error=error,
                      field=field)
        try:
            answer = resp.json()
        except ValueError:
            raise PermanentApiError(f"{path}: HTTP {resp.status_code} with a non-JSON body",
                                    status=resp.status_code) from None
        if not isinstance(answer, dict):
            raise PermanentApiError(f"{path}: answer is not a JSON object", status=resp.status_code)
        return answer
