# Identities and the roles each one holds, least privilege: every binding says why it exists.

# One runtime service account per function.
resource "google_service_account" "fn" {
  for_each = local.functions

  account_id   = "vigint-${each.value.name}"
  display_name = "Vigint ${each.key} function"
  description  = each.value.description
}

# The publish-only account: edge devices publish to edge-events with its short-lived access tokens, minted
# for them by edge_api (POST /v1/publish-credentials, at most 1 h). It has no key and no other role.
resource "google_service_account" "edge_publisher" {
  account_id   = "vigint-edge-publisher"
  display_name = "Vigint edge devices (publish only)"
  description  = "Publishes to edge-events only; tokens are vended to authenticated devices by edge_api."
}

# One account per push subscription, used only to sign the OIDC token of each delivery.
resource "google_service_account" "invoker" {
  for_each = local.pipeline_functions

  account_id   = "vigint-${each.value.name}-push"
  display_name = "Vigint ${each.value.topic} -> ${each.key} push"
  description  = "Identity of the ${each.key}-push subscription when it invokes the ${each.key} function."
}

# The identity of the retention scheduler job's OIDC token.
resource "google_service_account" "scheduler" {
  account_id   = "vigint-scheduler"
  display_name = "Vigint housekeeping scheduler"
  description  = "Identity of the Cloud Scheduler job when it invokes the retention function."
}

# The account Cloud Build uses to turn the source zip into the functions' images.
resource "google_service_account" "builder" {
  account_id   = "vigint-fn-builder"
  display_name = "Vigint function builds"
  description  = "Builds the function images from the source zip (Cloud Functions build service account)."
}

# --- Firestore ---------------------------------------------------------------------------------------------

# Every function reads or writes Firestore documents (devices, events, links, deliveries; the console also its
# users, sites, sessions, sign-in links and the audit log); datastore.user is
# the narrowest predefined role with document read/write and it exists only at project level.
resource "google_project_iam_member" "datastore_user" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.fn[each.key].member
}

# With gemini_backend = "vertex", analyze calls Gemini on Vertex AI as itself (no API key); aiplatform.user is
# the predefined role that allows predictions and exists only at project level.
resource "google_project_iam_member" "analyze_vertex" {
  count = var.gemini_backend == "vertex" ? 1 : 0

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.fn["analyze"].member
}

# --- Clips bucket ------------------------------------------------------------------------------------------

# edge_api signs the devices' PUT URLs as itself: the signer may create objects but not replace them
# (objectCreator: create only; replacing an object also needs storage.objects.delete). Stored evidence cannot
# be overwritten through its URLs (which also bind x-goog-if-generation-match: 0, docs/contracts.md): a device
# that lost the answer to a PUT is told by /v1/uploads that the object is stored (its size and MD5) instead.
resource "google_storage_bucket_iam_member" "edge_api_creator" {
  bucket = google_storage_bucket.clips.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.fn["edge_api"].member
}

# video_link, tenant_api (event detail) and console (the event page's player and snapshots, through the tenant
# API's handlers) sign GET URLs of clips and snapshots (the signer must be able to read them); analyze reads the clip for Gemini; alert reads the snapshot to attach it to the e-mail; ingest
# reads the stored objects' metadata to check them against the message; edge_api lists an event's stored
# objects so it never signs a PUT for one again.
resource "google_storage_bucket_iam_member" "clip_reader" {
  for_each = toset(["video_link", "tenant_api", "console", "analyze", "alert", "ingest", "edge_api"])

  bucket = google_storage_bucket.clips.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.fn[each.key].member
}

# retention deletes expired clips, snapshots and orphaned uploads: it must list, read and delete objects.
resource "google_storage_bucket_iam_member" "retention_deleter" {
  bucket = google_storage_bucket.clips.name
  role   = "roles/storage.objectUser"
  member = google_service_account.fn["retention"].member
}

# Legal hold (functions/vigint/legal_hold.py): tenant_api sets and clears the temporary hold of a held event's
# objects (https://cloud.google.com/storage/docs/object-holds), which needs storage.objects.update; it lists
# and reads them to find them. No predefined role has update without create and delete (objectUser has
# both), so a custom role with exactly these three permissions, bound on the clips bucket only. The retention
# function, which brings the holds of objects uploaded later up to date, has objectUser already.
resource "google_project_iam_custom_role" "object_holder" {
  role_id     = "vigintObjectHolder"
  title       = "Vigint object holder"
  description = "List, read and update (temporary hold) objects; no create or delete."
  permissions = ["storage.objects.get", "storage.objects.list", "storage.objects.update"]
}

# tenant_api places and releases the Cloud Storage holds of legal holds (custom role above).
resource "google_storage_bucket_iam_member" "tenant_api_object_holder" {
  bucket = google_storage_bucket.clips.name
  role   = google_project_iam_custom_role.object_holder.name
  member = google_service_account.fn["tenant_api"].member
}

# --- Signing and token minting (IAM Credentials API) -------------------------------------------------------

# edge_api, video_link, tenant_api and console have no key file in Google Cloud: they sign URLs through
# signBlob as themselves (VIGINT_SIGNING_SERVICE_ACCOUNT), which needs token creator on their own account
# (the console signs the clip and snapshot URLs of its event pages; signBlob has a per-project quota).
resource "google_service_account_iam_member" "self_signer" {
  for_each = toset(["edge_api", "video_link", "tenant_api", "console"])

  service_account_id = google_service_account.fn[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.fn[each.key].member
}

# edge_api mints the devices' publish tokens (generateAccessToken) as the publish-only account; it alone may.
resource "google_service_account_iam_member" "edge_api_vends_publisher_tokens" {
  service_account_id = google_service_account.edge_publisher.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.fn["edge_api"].member
}

# --- Secrets -----------------------------------------------------------------------------------------------

# Each function reads exactly the secrets in its local.functions entry (see main.tf for which and why): the
# SMTP password only alert (alert e-mails) and console (sign-in link e-mails).
resource "google_secret_manager_secret_iam_member" "function_secret" {
  for_each = local.function_secrets

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.value.function].member
}

# --- Invocation --------------------------------------------------------------------------------------------

# edge_api, video_link, tenant_api and console are public: devices, e-mail recipients, tenants' tools and
# people's browsers reach them without Google identities. Each authenticates every request itself (device HMAC
# secret; unguessable, expiring, revocable link token; per-user API key; server-side console session from an
# e-mailed one-time link or OIDC, with CSRF tokens on every form) and answers 401/403/404/410 otherwise.
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  for_each = local.public_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The pipeline functions are private: only their own push subscription's account may invoke each.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.pipeline_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker[each.key].member
}

# retention is private: only the scheduler job's account may invoke it.
resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["retention"].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# The Pub/Sub service agent creates the OIDC tokens of push deliveries as the invoker accounts.
resource "google_service_account_iam_member" "pubsub_signs_push_tokens" {
  for_each = local.pipeline_functions

  service_account_id = google_service_account.invoker[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Builds ------------------------------------------------------------------------------------------------

# The build reads the source zip...
resource "google_storage_bucket_iam_member" "builder_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.builder.member
}

# ... pushes the image (and its build cache) to the functions' repository only ...
resource "google_artifact_registry_repository_iam_member" "builder_writes_images" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.builder.member
}

# ... and writes its build log.
resource "google_project_iam_member" "builder_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.builder.member
}
