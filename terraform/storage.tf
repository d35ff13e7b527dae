# The clips bucket: event clips and snapshots under tenants/{t}/devices/{d}/events/{e}/ (docs/contracts.md).
# Devices write through V4 signed PUT URLs from edge_api; people read through short-lived signed GET URLs
# from video_link. Nobody has direct access.
locals {
  # scheme://host of the link page (VIGINT_PUBLIC_BASE_URL without its path): the only origin that reads
  # the clips bucket from a browser script (the CORS rule below).
  link_page_origin = regex("^https://[^/]+", local.public_base_url)
}

resource "google_storage_bucket" "clips" {
  #checkov:skip=CKV_GCP_78:Versioning stays off on purpose: a deleted clip must be gone (retention, GDPR erasure), and objects are write-once under unique event ids.
  #checkov:skip=CKV_GCP_62:Access is audited in Cloud Audit Logs (Data Access logs for storage.googleapis.com) and per link in Firestore links/{id}/access; a usage-log bucket would be a second copy of that without retention.
  name     = local.clips_bucket
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = false
  }

  # The retention backstop: whatever the application does or fails to do, objects older than
  # retention_days are deleted.
  lifecycle_rule {
    condition {
      age = var.retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Half-finished uploads (a device that lost power mid-PUT) are not kept either.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  # CORS for the link page only. hls.js (functions/vigint/static/player.js) fetches the HLS segments
  # segments/NNNNN.ts by XHR from the page's origin (video_link) through the signed GET URLs of the playlist:
  # cross-origin reads the browser allows only if the bucket answers with Access-Control-Allow-Origin for
  # that origin. GET and HEAD only, and only the link page's origin; no credentials are involved (the
  # signature is in the query string). A plain <video src> (schema v1 clips, Safari's native HLS) and the
  # devices' PUTs make no CORS request. fake-gcs-server ignores bucket CORS and answers any origin with
  # Access-Control-Allow-Origin: * (checked for the local stack), so this rule matters in Google Cloud only.
  # https://cloud.google.com/storage/docs/cross-origin
  cors {
    origin          = [local.link_page_origin]
    method          = ["GET", "HEAD"]
    response_header = ["Content-Type", "Content-Length", "Content-Range", "Accept-Ranges"]
    max_age_seconds = 3600
  }

  depends_on = [google_project_service.api]
}

# Function source: ONE zip of functions/ for every function, stored under its content hash so a new
# upload (and a redeploy) happens exactly when the code changes. Everything under functions/ goes in but
# caches: vigint/templates/ and vigint/static/ (the vendored hls.js with its LICENSE and pinned manifest,
# the link page's player.js), which video_link serves at /v/static/.
data "archive_file" "functions" {
  type        = "zip"
  source_dir  = var.functions_source_dir
  output_path = "${path.module}/build/functions.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc", ".pytest_cache/**"]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs written by the deploy pipeline; Cloud Audit Logs cover access.
  #checkov:skip=CKV_GCP_78:Objects are immutable and named by content hash; versioning would add nothing.
  name     = "${var.project_id}-vigint-fn-sources"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = false
  }

  # Old source zips are of no use once deployed; keep a month for rollbacks.
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions/${data.archive_file.functions.output_sha256}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.functions.output_path
}

# The container images Cloud Build makes from the source (instead of the default gcf-artifacts repository),
# so the builder account can be granted writer on this repository alone.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption, as everywhere in Vigint; the images hold only the public source of the functions.
  location      = var.region
  repository_id = "vigint-functions"
  description   = "Images of the Vigint Cloud Functions, built from the source zip."
  format        = "DOCKER"

  # Images of older deployments are deleted after 30 days, except the ten newest (rollback targets).
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.api]
}
