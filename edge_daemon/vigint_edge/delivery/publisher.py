"""Publishes event messages to the Pub/Sub topic ``edge-events``.

Two ways to reach Pub/Sub, chosen by the environment:

* ``PUBSUB_EMULATOR_HOST`` set (local stack): the client talks to the emulator, no credentials.
* otherwise: ``edge_api`` vends a short-lived OAuth2 access token of a publish-only service account
  (``POST /v1/publish-credentials``, docs/contracts.md). It is wrapped in
  ``google.oauth2.credentials.Credentials`` with a ``refresh_handler`` that asks ``edge_api`` again, so
  google-auth fetches a new token before each request once the current one is within
  ``google.auth._helpers.REFRESH_THRESHOLD`` (3 min 45 s) of its expiry. The device never holds a
  long-lived Google credential.

Each message carries the attributes of docs/contracts.md ("Event message") and ``signature`` = lower-case
hex ``HMAC-SHA256(secret, data)`` over the exact data bytes (the same as ``functions/vigint/device_keys.py``
``sign``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Callable

from vigint_edge.event_model import EdgeEvent, LifecycleMessage

log = logging.getLogger(__name__)

__all__ = ["EventPublisher", "PublishError", "sign_message"]


class PublishError(RuntimeError):
    """The message was not accepted by Pub/Sub (timeout, transport or permission error); retry later."""


def sign_message(data: bytes, secret: str) -> str:
    """The ``signature`` attribute: lower-case hex ``HMAC-SHA256(secret, data)``.

    Args:
        data: the exact message data bytes.
        secret: the device secret; its UTF-8 bytes are the HMAC key (docs/contracts.md).
    """
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def _naive_utc(value: datetime) -> datetime:
    """google-auth compares expiries with a naive UTC ``utcnow()``."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class EventPublisher:
    """Publishes ``EdgeEvent`` messages.

    Args:
        topic_path: full topic path ``projects/{p}/topics/edge-events``; None to use the topic
            ``edge_api`` names in its publish credentials.
        credentials_provider: callable returning a ``PublishCredentials`` (normally
            ``EdgeApiClient.publish_credentials``); called lazily, and again whenever the token needs
            refreshing.
        timeout_s: seconds to wait for Pub/Sub to accept one message.
        client_factory: builds the ``PublisherClient`` from ``credentials`` (None in emulator mode);
            defaults to ``google.cloud.pubsub_v1.PublisherClient(credentials=...)``.
    """

    def __init__(self, topic_path: str | None, credentials_provider: Callable[[], object],
                 timeout_s: float = 30.0, client_factory: Callable[..., object] | None = None) -> None:
        self._topic = topic_path
        self._provider = credentials_provider
        self.timeout_s = timeout_s
        self._client_factory = client_factory
        self._client = None
        self._credentials = None
        self._lock = threading.Lock()

    @classmethod
    def from_api(cls, api, topic_path: str | None = None, **kwargs) -> "EventPublisher":
        """A publisher whose topic and credentials come from ``api.publish_credentials`` (an
        ``EdgeApiClient``); ``kwargs`` go to the constructor."""
        return cls(topic_path, api.publish_credentials, **kwargs)

    # -------------------------------------------------------------------------------- credentials
    def _refresh_handler(self, request, scopes=None) -> tuple[str, datetime]:
        """google-auth ``refresh_handler``: a fresh token from ``edge_api`` (naive UTC expiry)."""
        from google.auth.exceptions import RefreshError

        try:
            creds = self._provider()
        except Exception as exc:  # noqa: BLE001 - google-auth expects RefreshError
            raise RefreshError(f"publish credentials unavailable: {exc}") from exc
        if creds.mode != "access_token" or creds.access_token is None or creds.expires_at is None:
            raise RefreshError(f"edge_api answered mode {creds.mode!r} without a usable access token")
        log.info("publisher: got a Pub/Sub access token valid until %s", creds.expires_at.isoformat())
        return creds.access_token.get_secret_value(), _naive_utc(creds.expires_at)

    def credentials(self):
        """The Google credentials the client uses: None in emulator mode, else OAuth2 access-token
        credentials built from the vended token (refreshed through ``edge_api`` before expiry).

        Raises:
            PublishError: ``edge_api`` says emulator mode but ``PUBSUB_EMULATOR_HOST`` is not set.
            vigint_edge.cloud.api_client.ApiError: the credentials could not be fetched.
        """
        if os.environ.get("PUBSUB_EMULATOR_HOST"):
            if self._topic is None:
                self._topic = self._provider().topic
            return None
        if self._credentials is None:
            import google.oauth2.credentials

            creds = self._provider()
            if self._topic is None:
                self._topic = creds.topic
            if creds.mode == "emulator":
                raise PublishError("edge_api vends emulator-mode credentials but PUBSUB_EMULATOR_HOST is unset")
            self._credentials = google.oauth2.credentials.Credentials(
                creds.access_token.get_secret_value(),
                expiry=_naive_utc(creds.expires_at),
                refresh_handler=self._refresh_handler,
            )
        return self._credentials

    def _get_client(self):
        with self._lock:
            if self._client is None:
                credentials = self.credentials()
                if self._client_factory is not None:
                    self._client = self._client_factory(credentials=credentials)
                else:
                    from google.cloud import pubsub_v1

                    # Each publish is waited for before the next (order, the spool's state), so there is
                    # nothing to batch: max_messages=1 sends at once instead of after BatchSettings' default
                    # max_latency of 10 ms (google-cloud-pubsub, pubsub_v1.types.BatchSettings).
                    self._client = pubsub_v1.PublisherClient(
                        credentials=credentials, batch_settings=pubsub_v1.types.BatchSettings(max_messages=1))
            return self._client

    def warm(self) -> None:
        """Fetches the publish credentials and opens the Pub/Sub client now, so the first message does not pay
        for them (measured: about 4 s on a loaded machine before the first publish of an event's ``start``).
        Never raises: offline, the first publish tries again."""
        try:
            self._get_client()
        except Exception as exc:  # noqa: BLE001 - ApiError, PublishError, network: publish() retries later
            log.warning("publisher: could not prepare the Pub/Sub client yet: %s", type(exc).__name__)

    @property
    def topic_path(self) -> str | None:
        """The topic published to (known after the first publish when built with ``topic_path=None``)."""
        return self._topic

    # ------------------------------------------------------------------------------------- publish
    def publish(self, event: EdgeEvent | LifecycleMessage, key_version: int, secret: str) -> str:
        """Publishes one signed event message and waits until Pub/Sub accepted it.

        Attributes: ``tenant_id``, ``device_id``, ``event_id``, ``schema_version`` ("1" or "2"),
        ``key_version``, ``signature``; version 2 also ``phase`` and ``seq`` (decimal string).

        Args:
            event: the version 1 event or version 2 message (its ``to_message_bytes()`` is the data).
            key_version: the device's key version (attribute ``key_version``).
            secret: the device secret the signature is made with; never logged.

        Returns:
            The Pub/Sub message id.

        Raises:
            PublishError: not accepted within ``timeout_s``, or refused by Pub/Sub.
            vigint_edge.cloud.api_client.ApiError: publish credentials could not be fetched.
        """
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        data = event.to_message_bytes()
        attributes = {
            "tenant_id": event.tenant_id,
            "device_id": event.device_id,
            "event_id": event.event_id,
            "schema_version": str(event.schema_version),
            "key_version": str(int(key_version)),
            "signature": sign_message(data, secret),
        }
        if isinstance(event, LifecycleMessage):
            attributes["phase"] = event.phase
            attributes["seq"] = str(event.seq)
        what = event.item_id if isinstance(event, LifecycleMessage) else event.event_id
        client = self._get_client()
        try:
            future = client.publish(self._topic, data, **attributes)
            message_id = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise PublishError(f"Pub/Sub did not accept {what} within {self.timeout_s:.0f} s") from None
        except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
            raise PublishError(f"publishing {what} failed: {type(exc).__name__}: {exc}") from exc
        log.info("published %s as message %s", what, message_id)
        return message_id

    def close(self) -> None:
        """Flushes and stops the client (it is rebuilt on the next publish)."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.stop()
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    log.debug("publisher: stop failed", exc_info=True)
                self._client = None
