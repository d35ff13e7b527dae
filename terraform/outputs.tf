output "edge_api_url" {
  description = "HTTPS endpoint of edge_api (the devices' api_url)."
  value       = google_cloudfunctions2_function.fn["edge_api"].url
}

output "video_link_url" {
  description = "HTTPS endpoint of video_link; alert e-mails link to <public_base_url>/v/<token>."
  value       = google_cloudfunctions2_function.fn["video_link"].url
}

output "tenant_api_url" {
  description = "HTTPS endpoint of tenant_api (GET /openapi.json describes it)."
  value       = google_cloudfunctions2_function.fn["tenant_api"].url
}

output "console_url" {
  description = "The operator console (VIGINT_CONSOLE_BASE_URL): open it in a browser and sign in with an e-mailed link."
  value       = local.console_base_url
}

output "public_base_url" {
  description = "VIGINT_PUBLIC_BASE_URL as set on the functions."
  value       = local.public_base_url
}

output "clips_bucket" {
  description = "Name of the clips bucket (VIGINT_BUCKET)."
  value       = google_storage_bucket.clips.name
}

output "topics" {
  description = "Pipeline topic ids (short names) by topic."
  value       = { for k, t in google_pubsub_topic.pipeline : k => t.name }
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each pipeline topic, and the subscription holding what lands there."
  value = {
    for k, t in google_pubsub_topic.dead_letter : k => {
      topic        = t.name
      subscription = google_pubsub_subscription.dead_letter_hold[k].name
    }
  }
}

output "publisher_service_account" {
  description = "Publish-only service account whose tokens edge_api vends to devices (VIGINT_PUBLISHER_SERVICE_ACCOUNT)."
  value       = google_service_account.edge_publisher.email
}

output "function_service_accounts" {
  description = "Runtime service account of each function."
  value       = { for k, sa in google_service_account.fn : k => sa.email }
}

output "functions_source_object" {
  description = "gs:// address of the source zip every function was built from."
  value       = "gs://${google_storage_bucket.sources.name}/${google_storage_bucket_object.functions_source.name}"
}
