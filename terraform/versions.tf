# Terraform and provider versions. The provider versions are pinned exactly: tests/deploy checks every
# resource argument against the schema of these very versions (cdktf-cdktf-provider-google 16.12.1 wraps
# hashicorp/google 6.50.0, cdktf-cdktf-provider-archive 11.0.1 wraps hashicorp/archive 2.7.1).
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "2.7.1"
    }
  }

  # State lives in a GCS bucket made once by hand (versioned, so an older state can be restored).
  # Partial configuration: Cloud Build passes it with
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=vigint/<env>"
  backend "gcs" {}
}
