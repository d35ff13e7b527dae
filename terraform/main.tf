# Vigint in Google Cloud: what every other file shares. The parts are split by concern:
#   apis.tf       services the project must have enabled
#   storage.tf    clips bucket, function source bucket and zip, Artifact Registry repository of the builds
#   pubsub.tf     the three pipeline topics, their dead-letter topics and push subscriptions
#   firestore.tf  the database, its composite indexes and TTL policies
#   secrets.tf    Secret Manager secrets (values are added out of band, never through Terraform)
#   kms.tf        the Cloud KMS key that signs evidence export manifests
#   iam.tf        one service account per function, each role with the reason it is needed
#   functions.tf  the 2nd-gen Cloud Functions (one per entry point of functions/main.py)
#   scheduler.tf  the housekeeping job of the retention function
# See README.md in this directory for the one-off bootstrap (state bucket, secret values).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  clips_bucket = var.clips_bucket_name != "" ? var.clips_bucket_name : "${var.project_id}-vigint-clips"

  # 2nd-gen functions keep the 1st-gen style URL https://<region>-<project>.cloudfunctions.net/<name>, which is
  # known before the function exists; using it avoids a dependency cycle between alert and video_link.
  function_base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  public_base_url   = var.public_base_url != "" ? trimsuffix(var.public_base_url, "/") : "${local.function_base_url}/video-link"
  # The operator console's origin (VIGINT_CONSOLE_BASE_URL): its sign-in links, the Origin check of its forms
  # and its cookies (https: Secure and the __Host- prefix) depend on it, and the functions that link to it
  # (sign-in e-mails; later alert e-mails) read it. The console serves absolute paths (/signin, /assets/...) and
  # its cookie has Path=/, so it must be the root of an origin of its own: not <function_base_url>/console,
  # which shares cloudfunctions.net's origin with video-link and would put the pages under a prefix. Cloud Run's
  # deterministic URL https://<service>-<project number>.<region>.run.app is known before the service exists
  # (https://cloud.google.com/run/docs/triggering/https-request#deterministic), so no dependency cycle.
  console_base_url = var.console_base_url != "" ? trimsuffix(var.console_base_url, "/") : "https://console-${data.google_project.this.number}.${var.region}.run.app"

  # The pipeline: topic -> the function it triggers (through the push subscription "<function>-push") ->
  # the topic that function publishes to. Names from docs/contracts.md.
  topics = {
    "edge-events"     = { publisher = "edge devices (publish-only service account)", consumer = "ingest" }
    "events-ingested" = { publisher = "ingest", consumer = "analyze" }
    "events-analyzed" = { publisher = "ingest (detections verdicts), analyze (Gemini's)", consumer = "alert" }
  }

  # Secret Manager secret id -> what it holds. Values are added with `gcloud secrets versions add`.
  secrets = {
    "device-key-secret" = "master key every device secret is derived from (HMAC-SHA256, docs/contracts.md)"
    "gemini-api-key"    = "Gemini API key of the analyze function"
    "smtp-password"     = "password of the SMTP relay account of the alert function"
  }

  # One entry per entry point of functions/main.py. name: the Cloud Functions (and Cloud Run service) name,
  # which may not contain '_'. public: anyone may invoke it (it authenticates requests itself); otherwise
  # only its push subscription or scheduler job may. topic: null for an HTTPS function, else the topic whose
  # push subscription invokes it. secrets: environment variable -> Secret Manager secret id; only what the function uses, but
  # VIGINT_DEVICE_KEY_SECRET everywhere because vigint.config.Settings requires it to start. warm: on the
  # path of an alert (the start's uploads, ingest, analyze, alert, the link page), so it keeps
  # var.warm_instances instances running (a cold start costs seconds, functions.tf).
  functions = {
    edge_api = {
      name        = "edge-api"
      public      = true
      warm        = true
      description = "HTTPS API of the edge devices: signed upload URLs, publish credentials, heartbeats."
      topic       = null
      memory      = "512Mi"
      timeout     = 60
      secrets     = { VIGINT_DEVICE_KEY_SECRET = "device-key-secret" }
    }
    video_link = {
      name        = "video-link"
      public      = true
      warm        = true
      description = "Expiring video-link page /v/{token} of alert e-mails."
      topic       = null
      memory      = "512Mi"
      timeout     = 60
      secrets     = { VIGINT_DEVICE_KEY_SECRET = "device-key-secret" }
    }
    tenant_api = {
      name        = "tenant-api"
      public      = true
      warm        = false
      description = "HTTPS API of tenants' users and tools (API keys): devices, cameras, events, alerts."
      topic       = null
      memory      = "512Mi"
      timeout     = 60
      secrets     = { VIGINT_DEVICE_KEY_SECRET = "device-key-secret" }
    }
    # The operator console (issue 11): server-rendered pages people's browsers call, so public; it
    # authenticates every request by its server-side session (e-mailed one-time link or OIDC sign-in), checks
    # CSRF on every form and answers the same 404 for another tenant's ids. It e-mails sign-in links, so it
    # reads the SMTP password; not warm (not on an alert's path; a cold start costs a person seconds once).
    console = {
      name        = "console"
      public      = true
      warm        = false
      description = "Operator console: sign-in, sites, events, alerts, devices, settings, users, audit log."
      topic       = null
      memory      = "512Mi"
      timeout     = 60
      secrets = {
        VIGINT_DEVICE_KEY_SECRET = "device-key-secret"
        VIGINT_SMTP_PASSWORD     = "smtp-password"
      }
    }
    retention = {
      name        = "retention"
      public      = false
      warm        = false
      description = "Scheduled housekeeping: retention deletes (documents and objects), stale-device alerts."
      topic       = null
      memory      = "1Gi"
      timeout     = 1800
      secrets     = { VIGINT_DEVICE_KEY_SECRET = "device-key-secret" }
    }
    ingest = {
      name        = "ingest"
      public      = false
      warm        = true
      description = "edge-events -> verified Firestore event document -> events-ingested."
      topic       = "edge-events"
      memory      = "512Mi"
      timeout     = 120
      secrets     = { VIGINT_DEVICE_KEY_SECRET = "device-key-secret" }
    }
    analyze = {
      name        = "analyze"
      public      = false
      warm        = true
      description = "events-ingested -> Gemini analysis of the clip -> events-analyzed."
      topic       = "events-ingested"
      memory      = "1Gi"
      timeout     = 540
      secrets = {
        VIGINT_DEVICE_KEY_SECRET = "device-key-secret"
        GEMINI_API_KEY           = "gemini-api-key"
      }
    }
    alert = {
      name        = "alert"
      public      = false
      warm        = true
      description = "events-analyzed -> alert e-mails with snapshot and expiring link."
      topic       = "events-analyzed"
      memory      = "512Mi"
      timeout     = 300
      secrets = {
        VIGINT_DEVICE_KEY_SECRET = "device-key-secret"
        VIGINT_SMTP_PASSWORD     = "smtp-password"
      }
    }
  }

  pipeline_functions = { for k, f in local.functions : k => f if f.topic != null }
  public_functions   = { for k, f in local.functions : k => f if f.public }

  # Environment every function gets (docs/contracts.md, "Functions' environment"). Per function, functions.tf
  # adds VIGINT_SIGNING_SERVICE_ACCOUNT (its own account) and the secrets above. Deliberately absent: the
  # *_EMULATOR_HOST variables, GOOGLE_APPLICATION_CREDENTIALS and GOOGLE_GEMINI_BASE_URL, which exist only
  # to point the code at the local stand-ins, and VIGINT_SMTP_CA_FILE (a CA file path: an instance has no such
  # file unless a secret volume is mounted, not built yet; relays with public certificates need none).
  common_env = {
    GOOGLE_CLOUD_PROJECT              = var.project_id
    VIGINT_BUCKET                     = google_storage_bucket.clips.name
    VIGINT_PUBLIC_BASE_URL            = local.public_base_url
    VIGINT_CONSOLE_BASE_URL           = local.console_base_url # sign-in links; links to the console in e-mails
    VIGINT_CONSOLE_SESSION_IDLE_S     = tostring(var.console_session_idle_s)
    VIGINT_CONSOLE_SESSION_MAX_S      = tostring(var.console_session_max_s)
    VIGINT_EDGE_EVENTS_TOPIC          = google_pubsub_topic.pipeline["edge-events"].name
    VIGINT_INGESTED_TOPIC             = google_pubsub_topic.pipeline["events-ingested"].name
    VIGINT_ANALYZED_TOPIC             = google_pubsub_topic.pipeline["events-analyzed"].name
    VIGINT_SMTP_HOST                  = var.smtp_host
    VIGINT_SMTP_PORT                  = tostring(var.smtp_port)
    VIGINT_SMTP_USER                  = var.smtp_user
    VIGINT_SMTP_STARTTLS              = tostring(var.smtp_starttls)
    VIGINT_MAIL_FROM                  = var.mail_from
    VIGINT_GEMINI_MODEL               = var.gemini_model
    VIGINT_PUBLISHER_SERVICE_ACCOUNT  = google_service_account.edge_publisher.email
    VIGINT_UPLOAD_URL_TTL_SECONDS     = tostring(var.upload_url_ttl_seconds)
    VIGINT_PLAYBACK_URL_TTL_SECONDS   = tostring(var.playback_url_ttl_seconds)
    VIGINT_RETENTION_DAYS             = tostring(var.retention_days) # same number as the bucket lifecycle
    VIGINT_EVENT_MAX_AGE_SECONDS      = tostring(var.event_max_age_seconds)
    VIGINT_EVENT_MAX_FUTURE_SECONDS   = tostring(var.event_max_future_seconds)
    VIGINT_HEARTBEAT_INTERVAL_SECONDS = tostring(var.heartbeat_interval_seconds)
    VIGINT_STALE_HEARTBEAT_INTERVALS  = tostring(var.stale_heartbeat_intervals)
    VIGINT_LATE_ALERT_SECONDS         = tostring(var.late_alert_seconds)
    VIGINT_SEGMENT_URL_TTL_SECONDS    = tostring(var.segment_url_ttl_seconds)
    VIGINT_GEMINI_BACKEND             = var.gemini_backend
    VIGINT_GEMINI_LOCATION            = var.gemini_location
    VIGINT_GEMINI_MONTHLY_TOKEN_CAP   = tostring(var.gemini_monthly_token_cap)
    VIGINT_GEMINI_EVENT_TOKEN_BUDGET  = tostring(var.gemini_event_token_budget)
    VIGINT_GEMINI_RETRY_ATTEMPTS      = tostring(var.retries.gemini_attempts)
    VIGINT_GEMINI_RETRY_INITIAL_S     = tostring(var.retries.gemini_initial_s)
    VIGINT_GEMINI_RETRY_MAX_S         = tostring(var.retries.gemini_max_s)
    VIGINT_SMTP_RETRY_ATTEMPTS        = tostring(var.retries.smtp_attempts)
    VIGINT_SMTP_RETRY_INITIAL_S       = tostring(var.retries.smtp_initial_s)
    VIGINT_WEBHOOK_TIMEOUT_S          = tostring(var.retries.webhook_timeout_s)
    VIGINT_WEBHOOK_RETRY_ATTEMPTS     = tostring(var.retries.webhook_attempts)
    VIGINT_WEBHOOK_RETRY_INITIAL_S    = tostring(var.retries.webhook_initial_s)
    VIGINT_EXPORT_KMS_KEY             = local.export_key_version # signs evidence exports (kms.tf)
  }

  # (function, secret) pairs, for the secretAccessor bindings in iam.tf.
  function_secrets = merge([
    for fn, f in local.functions : { for var_name, secret in f.secrets : "${fn}/${secret}" => { function = fn, secret = secret } }
  ]...)
}
