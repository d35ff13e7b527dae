variable "project_id" {
  type        = string
  description = "Google Cloud project id everything is deployed into (also GOOGLE_CLOUD_PROJECT of the functions)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 characters, lower-case letters, digits and hyphens."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the clips bucket and the build artifacts (e.g. europe-west1)."
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database: a region (europe-west1) or a multi-region (eur3, nam5). Cannot be changed after creation."
  default     = "eur3"
}

variable "clips_bucket_name" {
  type        = string
  description = "Globally unique name of the bucket holding event clips and snapshots (VIGINT_BUCKET). Empty: <project_id>-vigint-clips."
  default     = ""

  validation {
    condition     = var.clips_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.clips_bucket_name))
    error_message = "clips_bucket_name must be 3-63 characters of lower-case letters, digits, '-' and '_' (no dots)."
  }
}

variable "retention_days" {
  type        = number
  description = "Days after which clips, snapshots (bucket lifecycle) are deleted whatever happens; the backstop of retention."
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days between 1 and 3650."
  }
}

variable "public_base_url" {
  type        = string
  description = "Base URL of the video_link function used in alert e-mails (VIGINT_PUBLIC_BASE_URL), e.g. a custom domain. Empty: the function's own https://<region>-<project>.cloudfunctions.net/video-link URL."
  default     = ""

  validation {
    condition     = var.public_base_url == "" || can(regex("^https://[^/\\s]+(/[^\\s]*)?$", var.public_base_url))
    error_message = "public_base_url must be empty or an https:// URL."
  }
}

variable "console_base_url" {
  type        = string
  description = "Origin of the operator console (VIGINT_CONSOLE_BASE_URL), e.g. https://console.example.com: the root of an origin of its own, no path. Empty: the console function's deterministic Cloud Run URL https://console-<project number>.<region>.run.app."
  default     = ""

  validation {
    condition     = var.console_base_url == "" || can(regex("^https://[^/\\s]+/?$", var.console_base_url))
    error_message = "console_base_url must be empty or an https:// origin without a path."
  }
}

variable "console_session_idle_s" {
  type        = number
  description = "Seconds without a request after which a console session ends (VIGINT_CONSOLE_SESSION_IDLE_S)."
  default     = 43200

  validation {
    condition     = var.console_session_idle_s >= 60 && floor(var.console_session_idle_s) == var.console_session_idle_s
    error_message = "console_session_idle_s must be a whole number of seconds, at least 60."
  }
}

variable "console_session_max_s" {
  type        = number
  description = "Seconds after sign-in at which a console session ends, used or not (VIGINT_CONSOLE_SESSION_MAX_S); also its Firestore TTL."
  default     = 604800

  validation {
    condition     = var.console_session_max_s >= 300 && floor(var.console_session_max_s) == var.console_session_max_s
    error_message = "console_session_max_s must be a whole number of seconds, at least 300."
  }
}

variable "mail_from" {
  type        = string
  description = "From header of alert e-mails (VIGINT_MAIL_FROM), e.g. \"Vigint Alerts <alerts@example.com>\"."

  validation {
    condition     = can(regex("@", var.mail_from))
    error_message = "mail_from must contain an e-mail address."
  }
}

variable "smtp_host" {
  type        = string
  description = "SMTP relay the alert function sends through (VIGINT_SMTP_HOST)."
}

variable "smtp_port" {
  type        = number
  description = "Port of the SMTP relay (VIGINT_SMTP_PORT): 587 with STARTTLS is the usual submission port."
  default     = 587

  validation {
    condition     = var.smtp_port >= 1 && var.smtp_port <= 65535
    error_message = "smtp_port must be a TCP port (1-65535)."
  }
}

variable "smtp_user" {
  type        = string
  description = "SMTP user name (VIGINT_SMTP_USER); empty for a relay without AUTH. The password is the Secret Manager secret smtp-password."
  default     = ""
}

variable "smtp_starttls" {
  type        = bool
  description = "Whether the alert function upgrades the SMTP connection with STARTTLS (VIGINT_SMTP_STARTTLS)."
  default     = true
}

variable "gemini_model" {
  type        = string
  description = "Gemini model the analyze function asks (VIGINT_GEMINI_MODEL). The API key is the Secret Manager secret gemini-api-key."
  default     = "gemini-2.5-flash"

  validation {
    condition     = can(regex("^gemini-[a-z0-9.-]+$", var.gemini_model))
    error_message = "gemini_model must be a Gemini model name such as gemini-2.5-flash."
  }
}

variable "upload_url_ttl_seconds" {
  type        = number
  description = "Lifetime in seconds of the V4 signed PUT URLs edge_api hands to devices (VIGINT_UPLOAD_URL_TTL_SECONDS)."
  default     = 900

  validation {
    condition     = var.upload_url_ttl_seconds >= 60 && var.upload_url_ttl_seconds <= 43200
    error_message = "upload_url_ttl_seconds must be between 60 s and 12 h (signBlob-signed URLs last at most 12 h)."
  }
}

variable "playback_url_ttl_seconds" {
  type        = number
  description = "Lifetime in seconds of the signed GET URLs video_link puts in the player page (VIGINT_PLAYBACK_URL_TTL_SECONDS); a revoked link's URLs keep working at most this long."
  default     = 60

  validation {
    condition     = var.playback_url_ttl_seconds >= 60 && var.playback_url_ttl_seconds <= 43200
    error_message = "playback_url_ttl_seconds must be between 60 s and 12 h (signBlob-signed URLs last at most 12 h)."
  }
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of one Pub/Sub message to a pipeline function before it goes to the topic's dead-letter topic."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "max_instances" {
  type        = number
  description = "Upper bound of instances of each function (a cost and blast-radius cap)."
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "warm_instances" {
  type        = number
  description = "Instances kept started of each function on an alert's path (edge-api, ingest, analyze, alert, video-link), so the first alert after a quiet hour does not wait for cold starts; 0 saves their idle cost."
  default     = 1

  validation {
    condition     = var.warm_instances >= 0 && var.warm_instances <= 10
    error_message = "warm_instances must be between 0 and 10."
  }
}

variable "functions_source_dir" {
  type        = string
  description = "Directory zipped as the one source of every function (main.py, vigint/, requirements.txt)."
  default     = "../functions"
}

variable "gemini_backend" {
  type        = string
  description = "How analyze reaches Gemini (VIGINT_GEMINI_BACKEND): \"gemini\" with the gemini-api-key secret, or \"vertex\" through Vertex AI as its own service account."
  default     = "gemini"

  validation {
    condition     = contains(["gemini", "vertex"], var.gemini_backend)
    error_message = "gemini_backend must be \"gemini\" or \"vertex\"."
  }
}

variable "gemini_location" {
  type        = string
  description = "Vertex AI region used when gemini_backend is \"vertex\" (VIGINT_GEMINI_LOCATION)."
  default     = "us-central1"
}

variable "gemini_monthly_token_cap" {
  type        = number
  description = "Gemini tokens a tenant may use per month unless its own document says otherwise (VIGINT_GEMINI_MONTHLY_TOKEN_CAP); 0 disables analysis."
  default     = 20000000 # about 3,000 analysed events (6,400 tokens each, docs/deploying.md)

  validation {
    condition     = var.gemini_monthly_token_cap >= 0
    error_message = "gemini_monthly_token_cap must not be negative."
  }
}

variable "gemini_event_token_budget" {
  type        = number
  description = "Media tokens spent on one event's clip and keyframes (VIGINT_GEMINI_EVENT_TOKEN_BUDGET)."
  default     = 8000

  validation {
    condition     = var.gemini_event_token_budget >= 300
    error_message = "gemini_event_token_budget must be at least 300 tokens."
  }
}

variable "event_max_age_seconds" {
  type        = number
  description = "Events older than this when ingested are dropped, in seconds (VIGINT_EVENT_MAX_AGE_SECONDS); a spool replay after a long outage must fit in it."
  default     = 604800

  validation {
    condition     = var.event_max_age_seconds >= 60
    error_message = "event_max_age_seconds must be at least 60."
  }
}

variable "event_max_future_seconds" {
  type        = number
  description = "Clock-skew allowance for events stamped in the future, in seconds (VIGINT_EVENT_MAX_FUTURE_SECONDS)."
  default     = 300

  validation {
    condition     = var.event_max_future_seconds >= 0
    error_message = "event_max_future_seconds must not be negative."
  }
}

variable "heartbeat_interval_seconds" {
  type        = number
  description = "Seconds between device heartbeats (VIGINT_HEARTBEAT_INTERVAL_SECONDS)."
  default     = 60

  validation {
    condition     = var.heartbeat_interval_seconds >= 1
    error_message = "heartbeat_interval_seconds must be at least 1."
  }
}

variable "stale_heartbeat_intervals" {
  type        = number
  description = "Missed heartbeat intervals after which a device counts as offline (VIGINT_STALE_HEARTBEAT_INTERVALS)."
  default     = 5

  validation {
    condition     = var.stale_heartbeat_intervals >= 1
    error_message = "stale_heartbeat_intervals must be at least 1."
  }
}

variable "retries" {
  type = object({
    gemini_attempts   = optional(number, 4)
    gemini_initial_s  = optional(number, 1)
    gemini_max_s      = optional(number, 16)
    smtp_attempts     = optional(number, 3)
    smtp_initial_s    = optional(number, 1)
    webhook_timeout_s = optional(number, 10)
    webhook_attempts  = optional(number, 3)
    webhook_initial_s = optional(number, 1)
  })
  description = "In-process retries of the functions' outbound calls: attempts (1-10) and first/maximum back-off in seconds (VIGINT_GEMINI_RETRY_*, VIGINT_SMTP_RETRY_*, VIGINT_WEBHOOK_*). Pub/Sub redelivery comes on top."
  default     = {}

  validation {
    condition = alltrue([
      for a in [var.retries.gemini_attempts, var.retries.smtp_attempts, var.retries.webhook_attempts] : a >= 1 && a <= 10
    ])
    error_message = "retry attempts must be between 1 and 10."
  }
}

variable "housekeeping_schedule" {
  type        = string
  description = "Cron schedule (UTC) of the retention function: retention deletes and stale-device checks. Every run is idempotent; stale devices are noticed within one period."
  default     = "*/15 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.housekeeping_schedule))) == 5
    error_message = "housekeeping_schedule must be a 5-field cron expression."
  }
}

variable "late_alert_seconds" {
  type        = number
  description = "An alert whose start reached the cloud more than this many seconds after the event was confirmed says it is late, and by how much (VIGINT_LATE_ALERT_SECONDS)."
  default     = 30

  validation {
    condition     = var.late_alert_seconds >= 0
    error_message = "late_alert_seconds must be at least 0."
  }
}

variable "segment_url_ttl_seconds" {
  type        = number
  description = "Lifetime in seconds of the signed URL of each segment in a link page's HLS playlist (VIGINT_SEGMENT_URL_TTL_SECONDS); live playlists are fetched again every few seconds, so keep it short; a revoked link's segments keep playing at most this long."
  default     = 60

  validation {
    condition     = var.segment_url_ttl_seconds >= 10 && var.segment_url_ttl_seconds <= 3600
    error_message = "segment_url_ttl_seconds must be from 10 to 3600."
  }
}
