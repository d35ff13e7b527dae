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
  description = "Lifetime in seconds of the signed GET URLs video_link puts in the player page (VIGINT_PLAYBACK_URL_TTL_SECONDS)."
  default     = 600

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

variable "functions_source_dir" {
  type        = string
  description = "Directory zipped as the one source of every function (main.py, vigint/, requirements.txt)."
  default     = "../functions"
}
