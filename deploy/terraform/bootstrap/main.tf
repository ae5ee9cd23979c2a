# Creates the GCS buckets that hold each environment's Terraform state. Run once, before any
# `terraform apply` in envs/<env>, by someone allowed to create buckets in those projects.
# Its own state stays local (keep terraform.tfstate somewhere safe, or migrate it into one
# of the buckets afterwards with a backend "gcs" block and `terraform init -migrate-state`).

terraform {
  required_version = ">= 1.11"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.43.0"
    }
  }
}

provider "google" {}

resource "google_project_service" "storage" {
  for_each = var.state_projects

  project            = each.value
  service            = "storage.googleapis.com"
  disable_on_destroy = false
}

resource "google_storage_bucket" "state" {
  for_each = var.state_projects

  project                     = each.value
  name                        = "${each.value}-tfstate"
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Keep the last states for recovery, drop old noncurrent versions.
  lifecycle_rule {
    condition {
      num_newer_versions = var.state_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  labels = {
    purpose     = "terraform-state"
    environment = each.key
  }

  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.storage]
}
