# Firestore in native mode: tenants, devices, events, deliveries, links (docs/contracts.md).
resource "google_firestore_database" "default" {
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.api]
}

# Composite indexes of the event listings (per camera, newest first; by severity, newest first) within a
# tenant's events collection.
resource "google_firestore_index" "events_by_camera" {
  database    = google_firestore_database.default.name
  collection  = "events"
  query_scope = "COLLECTION"

  fields {
    field_path = "camera_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "start_time"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "events_by_severity" {
  database    = google_firestore_database.default.name
  collection  = "events"
  query_scope = "COLLECTION"

  fields {
    field_path = "severity"
    order      = "ASCENDING"
  }
  fields {
    field_path = "start_time"
    order      = "DESCENDING"
  }
}

# TTL policies: the retention backstop for documents. Firestore deletes a document (usually within 24 h)
# once the timestamp in its expire_at field has passed. Documents without the field are never deleted, so
# the writers must set expire_at = creation time + retention (see README.md).
resource "google_firestore_field" "ttl" {
  for_each = toset(["events", "links"])

  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expire_at"

  ttl_config {}

  # A TTL field needs no single-field index: keep its write cost down.
  index_config {}
}
