# The clips bucket: event clips and snapshots under tenants/{t}/devices/{d}/events/{e}/ (docs/contracts.md).
# Devices write through V4 signed PUT URLs from edge_api; people read through short-lived signed GET URLs
# from video_link. Nobody has direct access.
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

  # No CORS: the player page loads the clip with a plain <video src> (templates/video_page.html has no
  # crossorigin attribute) and devices PUT from outside a browser; neither makes a CORS request.

  depends_on = [google_project_service.api]
}

# Function source: ONE zip of functions/ for every function, stored under its content hash so a new
# upload (and a redeploy) happens exactly when the code changes.
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
