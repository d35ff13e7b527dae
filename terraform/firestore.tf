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

# Composite indexes of the event listings of the tenant API (functions/vigint/tenant_api/events.py): every
# listing is one tenant's events collection, newest first (start_time DESC, then __name__ DESC, which
# Firestore appends by itself), with equality / array-contains filters. One index per filtered field;
# Firestore merges them for queries combining several filters (e.g. camera_id and severity). The `kind` index
# also serves GET /v1/analytics/counts (functions/vigint/tenant_api/analytics.py: kind == K, range on start_time,
# start_time DESC).
locals {
  event_indexes = {
    camera       = { field = "camera_id", array = false }
    severity     = { field = "severity", array = false }
    kind         = { field = "kind", array = false }
    label        = { field = "labels", array = true }
    zone         = { field = "zones", array = true }
    alerted      = { field = "alert.alerted", array = false }
    acknowledged = { field = "ack.acknowledged", array = false }
  }
}

resource "google_firestore_index" "events" {
  for_each = local.event_indexes

  database    = google_firestore_database.default.name
  collection  = "events"
  query_scope = "COLLECTION"

  fields {
    field_path   = each.value.field
    order        = each.value.array ? null : "ASCENDING"
    array_config = each.value.array ? "CONTAINS" : null
  }
  fields {
    field_path = "start_time"
    order      = "DESCENDING"
  }
}

# Schema version 2 needs no composite index: analyze reads an event's segments ordered by `index` alone
# (segments subcollection, a single-field index Firestore keeps by itself); ingest and alert read documents by id.

# The retention job reads one tenant's links older than its cutoff (functions/vigint/retention.py).
resource "google_firestore_index" "links_by_tenant_age" {
  database    = google_firestore_database.default.name
  collection  = "links"
  query_scope = "COLLECTION"

  fields {
    field_path = "tenant_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "ASCENDING"
  }
}

# GET /v1/events/{event_id}/links and the event's revoke-all (functions/vigint/links.py of_event): one tenant's
# links of one event, oldest first.
resource "google_firestore_index" "links_by_tenant_event" {
  database    = google_firestore_database.default.name
  collection  = "links"
  query_scope = "COLLECTION"

  fields {
    field_path = "tenant_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "event_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "ASCENDING"
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

# The same backstop for the subcollections of schema version 2 events (tenants/{t}/events/{e}/messages and
# .../segments, written with expire_at by functions/vigint/ingest.py) and for the audit trail
# (tenants/{t}/audit, functions/vigint/audit.py) and the erasure tombstones (below): a field's TTL policy
# applies to every collection with that id (the collection group).
# The tombstones of camera erasures (functions/vigint/retention.py: tenants/{t}/erasures/{camera}): kept the
# event max age plus a day after the erase, then no message they refuse could pass ingest's age check anyway.
# (A tenant's deletion tombstone, deleted_tenants/{t}, has no expire_at: its devices' last key versions must
# outlive any re-creation of the tenant.) The legal-hold queries (held == true, hold_ids
# array-contains, hold_objects_pending == true, holds by camera_id, deleted_tenants with pending_held > 0)
# use single-field indexes Firestore keeps by itself; a camera hold's range query uses the camera index above.
resource "google_firestore_field" "ttl_lifecycle" {
  for_each = toset(["messages", "segments", "audit", "erasures"])

  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expire_at"

  ttl_config {}

  # A TTL field needs no single-field index: keep its write cost down.
  index_config {}
}

# --- The operator console (issue 11; functions/vigint/console/, docs/contracts.md "Console") ----------------

# TTL backstops of the console's short-lived documents, each written with expire_at: console_sessions (the
# session's absolute expiry, created_at + VIGINT_CONSOLE_SESSION_MAX_S; sessions.py), console_signin_links
# (15 minutes after the link was made; signin.py) and console_signin_limits (the rate-limit window's counter,
# kept two windows; signin.py), and console_oidc_states (a single sign-on flow's state, 10 minutes; part 4's
# console/oidc.py). The code refuses an expired document itself: TTL deletion may lag by a day.
resource "google_firestore_field" "ttl_console" {
  for_each = toset(["console_sessions", "console_signin_links", "console_signin_limits", "console_oidc_states"])

  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expire_at"

  ttl_config {}

  # A TTL field needs no single-field index: keep its write cost down.
  index_config {}
}

# Sign-in finds every tenant an address is a user of with a collection-group query over tenants/{t}/users
# (functions/vigint/console/users.py memberships: collection_group("users").where("email", "==", ...)).
# Firestore keeps single-field indexes of collection scope only; a collection-group query needs the
# COLLECTION_GROUP exemption (https://cloud.google.com/firestore/docs/query-data/queries#collection-group-query).
# An index_config replaces the automatic settings of the field, so the collection-scope ascending index (a
# tenant's users by address) is listed again; descending and array-contains indexes of email are not needed.
resource "google_firestore_field" "users_email" {
  database   = google_firestore_database.default.name
  collection = "users"
  field      = "email"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

# Revoking every session of a user (disabled, role changed, "sign out everywhere"): console_sessions where
# tenant_id == T and user_id == U. Firestore can answer equality filters alone by merging single-field
# indexes, but a composite index makes it one index scan and the query keeps working when an order is added.
resource "google_firestore_index" "console_sessions_by_user" {
  database    = google_firestore_database.default.name
  collection  = "console_sessions"
  query_scope = "COLLECTION"

  fields {
    field_path = "tenant_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "user_id"
    order      = "ASCENDING"
  }
}

# --- Composite indexes of the console's pages, reported by the parts that query them ------------------------
# (merged here after review: one resource per query shape, each with the query it serves and its file)
# part 1 (events timeline, event page, alerts inbox, overview tiles): the timeline, the overview's newest event
# and counts are served by the per-field event indexes above (Firestore merges equality indexes; a camera_id IN
# list is run as one equality query per value). The alerts inbox of a site-limited user filters alert.alerted
# (and ack.acknowledged) and camera_id IN its cameras, newest first (functions/vigint/console/pages/alerts.py):
# its own composite indexes, so it need not merge three indexes per camera.
resource "google_firestore_index" "console_inbox" {
  for_each = {
    alerted = ["alert.alerted", "camera_id"]
    unacked = ["alert.alerted", "ack.acknowledged", "camera_id"]
  }

  database    = google_firestore_database.default.name
  collection  = "events"
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }
  fields {
    field_path = "start_time"
    order      = "DESCENDING"
  }
}
# part 2 (devices, cameras, zones, sites): the camera page's snapshot is the camera's newest detection event
# (camera_id == C, kind == "detection", start_time DESC, limit 3; functions/vigint/console/pages/cameras.py),
# served by merging the camera and kind indexes above; no index of its own.
# part 3 (settings, users and roles, API keys, audit log, usage and cost):
# part 4 (single sign-on, OpenID Connect):
# --- end of the console's reported indexes ----------------------------------------------------------------
