# Services the deployment uses. disable_on_destroy = false: destroying Vigint must not switch off an API
# other workloads of the project may rely on.
locals {
  apis = toset([
    "artifactregistry.googleapis.com", # images the function builds produce
    "cloudbuild.googleapis.com",       # builds the functions from source
    "cloudfunctions.googleapis.com",   # 2nd-gen functions
    "cloudkms.googleapis.com",         # the key that signs evidence export manifests (kms.tf)
    "cloudscheduler.googleapis.com",   # the housekeeping job of the retention function
    "eventarc.googleapis.com",         # required by the Cloud Functions v2 API even for HTTP/push functions
    "firestore.googleapis.com",        # tenants, devices, events, links
    "iam.googleapis.com",              # the service accounts below
    "iamcredentials.googleapis.com",   # signBlob (signed URLs) and generateAccessToken (device publish tokens)
    "pubsub.googleapis.com",           # the event pipeline
    "run.googleapis.com",              # 2nd-gen functions run as Cloud Run services
    "secretmanager.googleapis.com",    # device key master secret, Gemini key, SMTP password
    "storage.googleapis.com",          # clips and function sources
  ])

  # Vertex AI only when analyze reaches Gemini through it.
  vertex_apis = var.gemini_backend == "vertex" ? toset(["aiplatform.googleapis.com"]) : toset([])
}

resource "google_project_service" "api" {
  for_each = setunion(local.apis, local.vertex_apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
