# Housekeeping: Cloud Scheduler calls the private retention function (retention deletes, stale-device health
# events) with an OIDC token of its own account. The bucket lifecycle and Firestore TTL remain the backstop
# if it does not run.
resource "google_cloud_scheduler_job" "retention" {
  name        = "vigint-retention"
  description = "Runs the retention function: deletes expired events, links and objects; flags silent devices."
  region      = var.region
  schedule    = var.housekeeping_schedule
  time_zone   = "Etc/UTC"

  # A run may take up to the function's timeout; Cloud Scheduler allows at most 30 min for HTTP targets.
  attempt_deadline = "1800s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    uri         = google_cloudfunctions2_function.fn["retention"].service_config[0].uri
    http_method = "POST"

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.fn["retention"].service_config[0].uri
    }
  }

  depends_on = [google_project_service.api, google_cloud_run_v2_service_iam_member.scheduler_invoker]
}
