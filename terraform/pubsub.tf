# The event pipeline (docs/contracts.md): edge-events -> ingest -> events-ingested -> analyze ->
# events-analyzed -> alert. Each function is invoked by a push subscription "<function>-push" on its topic,
# the same shape as the local stack, rather than by an Eventarc trigger: an Eventarc-made subscription
# cannot be given a dead-letter policy from Terraform, and these can.

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "pipeline" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is used for all of Vigint's data; a customer-managed KMS key would have to be introduced for the bucket and Firestore too to mean anything.
  for_each = local.topics

  name = each.key
  # Messages are kept a day even with no subscriber, so a function redeployed with a broken subscription
  # does not lose events.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.api]
}

# Where a message goes after max_delivery_attempts failed deliveries.
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption, as for the pipeline topics.
  for_each = local.topics

  name                       = "${each.key}-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.api]
}

# A dead-letter topic without a subscription drops what it receives; this one keeps it 7 days for an operator
# to inspect and replay (`gcloud pubsub subscriptions pull <topic>-dead-letter-hold`).
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = local.topics

  name                       = "${each.key}-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  message_retention_duration = "604800s"
  retain_acked_messages      = false
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires, however long nobody pulls
  }
}

# ingest-push, analyze-push, alert-push: deliver each message to its function's HTTPS endpoint, signed with
# an OIDC token of the function's own invoker account (Cloud Run checks it, the function is not public).
resource "google_pubsub_subscription" "push" {
  for_each = local.pipeline_functions

  name  = "${each.key}-push"
  topic = google_pubsub_topic.pipeline[each.value.topic].id

  # The function acknowledges by answering; give it its whole timeout (Pub/Sub's limit is 600 s).
  ack_deadline_seconds       = min(each.value.timeout, 600)
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.fn[each.key].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker[each.key].email
      audience              = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    }
  }

  # Redelivery after a failure (the handlers raise on transient errors), backing off 10 s .. 10 min.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  # Dead-lettering needs the service agent's publisher binding in place before the first message fails.
  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}

# Dead-lettering is done by the Pub/Sub service agent: it must be able to publish to the dead-letter topic...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.topics

  topic  = google_pubsub_topic.dead_letter[each.key].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ... and to subscribe to (acknowledge on) the subscription it forwards the message from.
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.pipeline_functions

  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Each function publishes to the topics after its own only, never to its own trigger's topic.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = {
    "ingest:events-ingested"    = { fn = "ingest", topic = "events-ingested" }    # each stored event to analyze (Gemini)
    "ingest:events-analyzed"    = { fn = "ingest", topic = "events-analyzed" }    # its detections verdict straight to alert
    "retention:events-ingested" = { fn = "retention", topic = "events-ingested" } # device_offline health events
    "analyze:events-analyzed"   = { fn = "analyze", topic = "events-analyzed" }   # Gemini's verdicts to alert
  }

  topic  = google_pubsub_topic.pipeline[each.value.topic].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.fn[each.value.fn].member
}

# Devices publish events with short-lived tokens of this account (vended by edge_api), to edge-events only.
resource "google_pubsub_topic_iam_member" "edge_publisher" {
  topic  = google_pubsub_topic.pipeline["edge-events"].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.edge_publisher.member
}
