"""Alert webhooks: a signed JSON POST per alerted event to the tenant's ``alert.webhook.url``.

Signature scheme (modelled on Stripe's ``Stripe-Signature``): the request carries

* ``X-Vigint-Timestamp``: Unix time in seconds (integer, as ASCII) when the request was signed;
* ``X-Vigint-Signature``: ``v1=`` + lower-case hex ``HMAC-SHA256(secret, f"{timestamp}.{body}")``, the body
  being the exact request bytes (UTF-8 JSON) and the secret the tenant's ``alert.webhook.secret`` as UTF-8.

Receivers recompute the HMAC, compare in constant time and reject timestamps older than a tolerance
(``verify`` does all three; 300 s by default, as Stripe's libraries do) to stop replays.

Delivery: ``requests`` with ``VIGINT_WEBHOOK_TIMEOUT_S``; connection errors, 408, 429 and 5xx answers are
retried by tenacity with jittered exponential back-off (``VIGINT_WEBHOOK_RETRY_*``), each try freshly signed.
Other 4xx answers are permanent. The secret is never logged. ``post(..., before_attempt=)`` is called before
every POST and every back-off wait (the alert renews its delivery claim there, see
``vigint.alert.webhook_lease_s``). A POST whose answer is lost (timeout, the process dies) may be repeated: each
carries the same ``event_id`` in its body, for receivers to fold duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Vigint-Timestamp"
SIGNATURE_HEADER = "X-Vigint-Signature"
DEFAULT_TOLERANCE_S = 300
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
RETRY_MAX_WAIT_S = 10.0
"""Longest back-off wait between two POSTs, seconds."""


class WebhookError(RuntimeError):
    """The endpoint did not accept the POST. ``permanent`` is True for answers a retry cannot fix."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.status, self.permanent = status, permanent


@dataclass(frozen=True)
class Result:
    """A delivered webhook: the HTTP status and how many POSTs it took."""

    status: int
    attempts: int


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex ``HMAC-SHA256(secret, b"{timestamp}." + body)``."""
    mac = hmac.new(secret.encode("utf-8"), str(int(timestamp)).encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """Checks a received webhook (for receivers and tests): signature and timestamp freshness.

    Args:
        secret: the shared webhook secret.
        body: the raw request body bytes.
        timestamp: the ``X-Vigint-Timestamp`` header.
        signature: the ``X-Vigint-Signature`` header (``v1=<hex>``; several comma-separated values allowed).
        tolerance_s: largest accepted age (and clock skew) of the timestamp, seconds.
        now: current Unix time (default ``time.time()``).
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body)
    return any(hmac.compare_digest(expected.encode(), s.strip().encode("utf-8", "replace"))
               for s in str(signature or "").split(","))


def payload(*, event: Mapping[str, Any], tenant_id: str, link_url: str | None = None) -> dict:
    """The JSON document POSTed for one alerted event (no secrets; the link, if any, is a tenant-wide one)."""
    analysis = event.get("analysis") or {}

    def iso(t):
        return t.isoformat() if hasattr(t, "isoformat") else t

    return {
        "type": "alert",
        "tenant_id": tenant_id,
        "event_id": event.get("event_id"),
        "device_id": event.get("device_id"),
        "camera_id": event.get("camera_id"),
        "kind": event.get("kind", "detection"),
        "labels": list(event.get("labels") or []),
        "zones": list(event.get("zones") or []),
        "start_time": iso(event.get("start_time")),
        "end_time": iso(event.get("end_time")),
        "analysis": {k: analysis.get(k) for k in ("status", "source", "threat_level", "title", "summary",
                                                   "confidence", "notable_objects") if k in analysis},
        **({"link_url": link_url} if link_url else {}),
    }


def post(url: str, secret: str, body_obj: Mapping[str, Any], *, timeout_s: float = 10.0, attempts: int = 3,
         initial_s: float = 1.0, session: requests.Session | None = None,
         before_attempt: Callable[[], None] | None = None) -> Result:
    """POSTs ``body_obj`` as signed JSON, retrying transient failures.

    ``timeout_s`` is ``requests``' timeout (connect, and each wait for bytes of the answer), seconds;
    ``before_attempt`` is called before every POST and every back-off wait, and whatever it raises stops the
    delivery at once.

    Returns:
        ``Result(status, attempts)`` for a 2xx answer.

    Raises:
        WebhookError: a non-2xx answer or a network error after the retries (``permanent`` for 4xx other
            than 408/425/429).
    """
    body = json.dumps(body_obj, separators=(",", ":"), sort_keys=True, default=str).encode()
    http = session or requests
    tries = 0

    def once() -> int:
        nonlocal tries
        tries += 1
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "Vigint-Webhook/1",
                   TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body)}
        try:
            resp = http.post(url, data=body, headers=headers, timeout=timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            raise WebhookError(f"webhook unreachable: {type(exc).__name__}") from None
        if 200 <= resp.status_code < 300:
            return resp.status_code
        raise WebhookError(f"webhook answered {resp.status_code}", resp.status_code,
                           permanent=resp.status_code not in RETRY_STATUS and resp.status_code < 500)

    renew = before_attempt or (lambda: None)
    for attempt in Retrying(stop=stop_after_attempt(max(1, attempts)),
                            wait=wait_random_exponential(multiplier=initial_s, max=RETRY_MAX_WAIT_S),
                            retry=retry_if_exception(lambda e: isinstance(e, WebhookError) and not e.permanent),
                            reraise=True, before_sleep=lambda _state: renew()):
        with attempt:
            renew()
            status = once()
    log.info("webhook: delivered to %s (HTTP %d, %d attempt(s))", _origin(url), status, tries)
    return Result(status, tries)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
