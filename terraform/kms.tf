# The key that signs evidence export manifests (functions/vigint/export_signing.py, KmsSigner): an asymmetric
# Cloud KMS key, EC_SIGN_P256_SHA256, whose private half never leaves KMS. Tenants check packages with its
# public key (GET /v1/export-key, python -m vigint.admin verify-export).
# https://cloud.google.com/kms/docs/algorithms#elliptic_curve_signing_algorithms
resource "google_kms_key_ring" "vigint" {
  name     = "vigint"
  location = var.region

  depends_on = [google_project_service.api]
}

resource "google_kms_crypto_key" "evidence" {
  #checkov:skip=CKV_GCP_43:Asymmetric signing keys cannot rotate automatically (KMS rotates symmetric keys only); a new version is added by hand and packages name the key_id they were signed with.
  name     = "evidence-export"
  key_ring = google_kms_key_ring.vigint.id
  purpose  = "ASYMMETRIC_SIGN"

  version_template {
    algorithm        = "EC_SIGN_P256_SHA256"
    protection_level = "SOFTWARE"
  }

  # Old packages stay verifiable only while the key exists: never destroy it with the stack.
  lifecycle {
    prevent_destroy = true
  }
}

locals {
  # The first version, created with the key; VIGINT_EXPORT_KMS_KEY of every function (main.tf common_env).
  export_key_version = "${google_kms_crypto_key.evidence.id}/cryptoKeyVersions/1"
}

# tenant_api signs the manifests of the packages it builds (POST /v1/events/{id}/export): useToSign on this key
# only, nothing else in KMS.
resource "google_kms_crypto_key_iam_member" "tenant_api_signs_exports" {
  crypto_key_id = google_kms_crypto_key.evidence.id
  role          = "roles/cloudkms.signer"
  member        = google_service_account.fn["tenant_api"].member
}

# tenant_api answers GET /v1/export-key and names the key_id in each manifest: it reads the public key of this
# key only (cloudkms.signer does not include viewPublicKey).
resource "google_kms_crypto_key_iam_member" "tenant_api_reads_export_key" {
  crypto_key_id = google_kms_crypto_key.evidence.id
  role          = "roles/cloudkms.publicKeyViewer"
  member        = google_service_account.fn["tenant_api"].member
}
