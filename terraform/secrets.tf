# The secrets of the functions. Terraform makes only the containers: values are added out of band
# (`printf %s "$VALUE" | gcloud secrets versions add <id> --data-file=-`) so they never enter Terraform
# state or Cloud Build logs. Functions read version "latest" at instance start.
resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  secret_id = each.key
  labels = {
    app = "vigint"
  }
  annotations = {
    purpose = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}
