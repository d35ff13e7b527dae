# The functions, one per entry point of functions/main.py: 2nd gen, Python 3.11, all built from the one
# source zip (storage.tf); the entry point is the name of the decorated function. edge_api, video_link,
# tenant_api and console are public HTTPS endpoints; ingest, analyze and alert are invoked by their push subscriptions
# (pubsub.tf); retention by its Cloud Scheduler job (scheduler.tf).
resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = each.value.name
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = "python311"
    entry_point       = each.key
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory = each.value.memory
    timeout_seconds  = each.value.timeout
    # Alerts in seconds: a Python instance starting cold (image pull, imports, clients) takes seconds, on each
    # of the four functions an alert passes through. Minimum instances stay started and are billed while
    # idle (https://cloud.google.com/functions/docs/configuring/min-instances).
    min_instance_count             = each.value.warm ? var.warm_instances : 0
    max_instance_count             = var.max_instances
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.fn[each.key].email
    # Private functions accept only Google-internal traffic (Pub/Sub push and Cloud Scheduler count as such).
    ingress_settings = each.value.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"

    # Signed URLs are signed through IAM signBlob as the function's own account (iam.tf: self_signer).
    environment_variables = merge(local.common_env, {
      VIGINT_SIGNING_SERVICE_ACCOUNT = google_service_account.fn[each.key].email
    })

    dynamic "secret_environment_variables" {
      for_each = each.value.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.api,
    # The first instance must be able to read its secrets, and the build to read the source and push.
    google_secret_manager_secret_iam_member.function_secret,
    google_storage_bucket_iam_member.builder_reads_sources,
    google_artifact_registry_repository_iam_member.builder_writes_images,
    google_project_iam_member.builder_logs,
  ]
}
