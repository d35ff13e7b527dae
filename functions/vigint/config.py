"""Typed configuration of the cloud functions, read once from the environment (docs/contracts.md).

Terraform sets these variables in Google Cloud; ``infra/local/stack.py`` sets them locally. ``settings()``
caches the parsed result; ``vigint.clients.reset()`` clears that cache (tests change the environment).
"""

from __future__ import annotations

import functools
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

_TRUE = {"1", "true", "yes", "on"}


class ConfigError(RuntimeError):
    """A required variable is missing or a value is unusable; the message names the variable."""


class Settings(BaseModel):
    """The functions' settings. Field docs name the environment variable each comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str = Field(min_length=1, description="GOOGLE_CLOUD_PROJECT")
    bucket: str = Field(min_length=1, description="VIGINT_BUCKET: the clips bucket")
    device_key_secret: SecretStr = Field(description="VIGINT_DEVICE_KEY_SECRET: master key of device secrets")
    public_base_url: str = Field(default="", description="VIGINT_PUBLIC_BASE_URL: base URL of video_link")
    edge_events_topic: str = "edge-events"
    ingested_topic: str = "events-ingested"
    analyzed_topic: str = "events-analyzed"
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Vigint Alerts <alerts@vigint.invalid>"
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    signing_service_account: str | None = None
    publisher_service_account: str | None = None
    upload_url_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # Signed media URLs of a link page (and of GET /v1/events/{id}): a revoked link's URLs stop working at most
    # this long after the revocation (issue 14: "within a minute"), so the page renews them as it plays.
    playback_url_ttl_seconds: int = Field(default=60, ge=1, le=7 * 24 * 3600, description=(
        "VIGINT_PLAYBACK_URL_TTL_SECONDS: lifetime of the signed snapshot, clip and download URLs of a link "
        "page and of the tenant API; bounds how long a revoked link's URLs keep working"))
    firestore_emulator_host: str | None = None
    pubsub_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    # --- added for ingest hardening, analysis, alerts and retention (all optional, with defaults) ---
    event_max_age_seconds: int = Field(default=7 * 24 * 3600, ge=60,
                                       description="VIGINT_EVENT_MAX_AGE_SECONDS: older events are dropped")
    event_max_future_seconds: int = Field(default=300, ge=0,
                                          description="VIGINT_EVENT_MAX_FUTURE_SECONDS: clock-skew allowance")
    gemini_backend: Literal["gemini", "vertex"] = Field(
        default="gemini", description="VIGINT_GEMINI_BACKEND: gemini (API key) or vertex (Vertex AI, ADC)")
    gemini_location: str = Field(default="us-central1", description="VIGINT_GEMINI_LOCATION (Vertex AI region)")
    gemini_monthly_token_cap: int = Field(default=20_000_000, ge=0,
                                          description="VIGINT_GEMINI_MONTHLY_TOKEN_CAP: per tenant, if unset there")
    gemini_event_token_budget: int = Field(default=8_000, ge=300,
                                           description="VIGINT_GEMINI_EVENT_TOKEN_BUDGET: media tokens per event")
    gemini_retry_attempts: int = Field(default=4, ge=1, le=10, description="VIGINT_GEMINI_RETRY_ATTEMPTS")
    gemini_retry_initial_s: float = Field(default=1.0, ge=0.0, description="VIGINT_GEMINI_RETRY_INITIAL_S")
    gemini_retry_max_s: float = Field(default=16.0, ge=0.0, description="VIGINT_GEMINI_RETRY_MAX_S")
    smtp_ca_file: str | None = Field(default=None, description="VIGINT_SMTP_CA_FILE: extra CA for STARTTLS")
    smtp_retry_attempts: int = Field(default=3, ge=1, le=10, description="VIGINT_SMTP_RETRY_ATTEMPTS")
    smtp_retry_initial_s: float = Field(default=1.0, ge=0.0, description="VIGINT_SMTP_RETRY_INITIAL_S")
    webhook_timeout_s: float = Field(default=10.0, gt=0.0, description="VIGINT_WEBHOOK_TIMEOUT_S")
    webhook_retry_attempts: int = Field(default=3, ge=1, le=10, description="VIGINT_WEBHOOK_RETRY_ATTEMPTS")
    webhook_retry_initial_s: float = Field(default=1.0, ge=0.0, description="VIGINT_WEBHOOK_RETRY_INITIAL_S")
    retention_days: int = Field(default=30, ge=1, le=3650,
                                description="VIGINT_RETENTION_DAYS: default when a tenant sets none")
    heartbeat_interval_seconds: int = Field(default=60, ge=1, description="VIGINT_HEARTBEAT_INTERVAL_SECONDS")
    stale_heartbeat_intervals: int = Field(default=5, ge=1, description="VIGINT_STALE_HEARTBEAT_INTERVALS")
    late_alert_seconds: float = Field(default=30.0, ge=0.0, description=(
        "VIGINT_LATE_ALERT_SECONDS: an alert whose start reached the cloud more than this many seconds after "
        "the event was confirmed (sent_at - confirmed_at) says it is late, and by how much"))
    segment_url_ttl_seconds: int = Field(default=60, ge=10, le=3600, description=(
        "VIGINT_SEGMENT_URL_TTL_SECONDS: lifetime of the signed URL of each segment in a link page's playlist "
        "(the page fetches the playlist again well before they expire); bounds how long a revoked link's "
        "segments keep playing"))

    console_base_url: str = Field(default="", description=(
        "VIGINT_CONSOLE_BASE_URL: the operator console's origin (https://... in Google Cloud); sign-in links "
        "and invitations point there, and its session cookie is Secure when it starts with https"))
    console_session_idle_s: int = Field(default=12 * 3600, ge=60, description=(
        "VIGINT_CONSOLE_SESSION_IDLE_S: a console session unused this long ends"))
    console_session_max_s: int = Field(default=7 * 24 * 3600, ge=300, description=(
        "VIGINT_CONSOLE_SESSION_MAX_S: a console session ends this long after sign-in, used or not"))

    export_kms_key: str | None = Field(default=None, description=(
        "VIGINT_EXPORT_KMS_KEY: Cloud KMS key version (projects/.../cryptoKeys/K/cryptoKeyVersions/N, "
        "EC_SIGN_P256_SHA256) that signs evidence export manifests (Google Cloud)"))
    export_signing_key_file: str | None = Field(default=None, description=(
        "VIGINT_EXPORT_SIGNING_KEY_FILE: PEM file of the ECDSA P-256 private key that signs evidence export "
        "manifests where there is no KMS key (the local stack generates one)"))

    @field_validator("public_base_url", "console_base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def storage_endpoint(self) -> str:
        """Scheme + host that signed URLs point at: fake-gcs-server locally, Google's endpoint otherwise."""
        return (self.storage_emulator_host or "https://storage.googleapis.com").rstrip("/")


# Environment variable -> Settings field.
ENV = {
    "GOOGLE_CLOUD_PROJECT": "project",
    "VIGINT_BUCKET": "bucket",
    "VIGINT_DEVICE_KEY_SECRET": "device_key_secret",
    "VIGINT_PUBLIC_BASE_URL": "public_base_url",
    "VIGINT_EDGE_EVENTS_TOPIC": "edge_events_topic",
    "VIGINT_INGESTED_TOPIC": "ingested_topic",
    "VIGINT_ANALYZED_TOPIC": "analyzed_topic",
    "VIGINT_SMTP_HOST": "smtp_host",
    "VIGINT_SMTP_PORT": "smtp_port",
    "VIGINT_SMTP_USER": "smtp_user",
    "VIGINT_SMTP_PASSWORD": "smtp_password",
    "VIGINT_SMTP_STARTTLS": "smtp_starttls",
    "VIGINT_MAIL_FROM": "mail_from",
    "GEMINI_API_KEY": "gemini_api_key",
    "VIGINT_GEMINI_MODEL": "gemini_model",
    "GOOGLE_GEMINI_BASE_URL": "gemini_base_url",
    "VIGINT_SIGNING_SERVICE_ACCOUNT": "signing_service_account",
    "VIGINT_PUBLISHER_SERVICE_ACCOUNT": "publisher_service_account",
    "VIGINT_UPLOAD_URL_TTL_SECONDS": "upload_url_ttl_seconds",
    "VIGINT_PLAYBACK_URL_TTL_SECONDS": "playback_url_ttl_seconds",
    "FIRESTORE_EMULATOR_HOST": "firestore_emulator_host",
    "PUBSUB_EMULATOR_HOST": "pubsub_emulator_host",
    "STORAGE_EMULATOR_HOST": "storage_emulator_host",
    "VIGINT_EVENT_MAX_AGE_SECONDS": "event_max_age_seconds",
    "VIGINT_EVENT_MAX_FUTURE_SECONDS": "event_max_future_seconds",
    "VIGINT_GEMINI_BACKEND": "gemini_backend",
    "VIGINT_GEMINI_LOCATION": "gemini_location",
    "VIGINT_GEMINI_MONTHLY_TOKEN_CAP": "gemini_monthly_token_cap",
    "VIGINT_GEMINI_EVENT_TOKEN_BUDGET": "gemini_event_token_budget",
    "VIGINT_GEMINI_RETRY_ATTEMPTS": "gemini_retry_attempts",
    "VIGINT_GEMINI_RETRY_INITIAL_S": "gemini_retry_initial_s",
    "VIGINT_GEMINI_RETRY_MAX_S": "gemini_retry_max_s",
    "VIGINT_SMTP_CA_FILE": "smtp_ca_file",
    "VIGINT_SMTP_RETRY_ATTEMPTS": "smtp_retry_attempts",
    "VIGINT_SMTP_RETRY_INITIAL_S": "smtp_retry_initial_s",
    "VIGINT_WEBHOOK_TIMEOUT_S": "webhook_timeout_s",
    "VIGINT_WEBHOOK_RETRY_ATTEMPTS": "webhook_retry_attempts",
    "VIGINT_WEBHOOK_RETRY_INITIAL_S": "webhook_retry_initial_s",
    "VIGINT_RETENTION_DAYS": "retention_days",
    "VIGINT_HEARTBEAT_INTERVAL_SECONDS": "heartbeat_interval_seconds",
    "VIGINT_STALE_HEARTBEAT_INTERVALS": "stale_heartbeat_intervals",
    "VIGINT_LATE_ALERT_SECONDS": "late_alert_seconds",
    "VIGINT_SEGMENT_URL_TTL_SECONDS": "segment_url_ttl_seconds",
    "VIGINT_CONSOLE_BASE_URL": "console_base_url",
    "VIGINT_CONSOLE_SESSION_IDLE_S": "console_session_idle_s",
    "VIGINT_CONSOLE_SESSION_MAX_S": "console_session_max_s",
    "VIGINT_EXPORT_KMS_KEY": "export_kms_key",
    "VIGINT_EXPORT_SIGNING_KEY_FILE": "export_signing_key_file",
}


def load(environ: dict[str, str] | None = None) -> Settings:
    """Parses settings from ``environ`` (default ``os.environ``); empty values count as unset.

    Raises:
        ConfigError: a required variable is missing or a value does not parse (names the variable,
            never its value).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for var, field in ENV.items():
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        values[field] = raw.lower() in _TRUE if field == "smtp_starttls" else raw
    try:
        return Settings(**values)
    except ValidationError as exc:
        by_field = {v: k for k, v in ENV.items()}
        problems = "; ".join(
            f"{by_field.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid function configuration: {problems}") from None


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, parsed on first use and cached (see ``load``)."""
    return load()
