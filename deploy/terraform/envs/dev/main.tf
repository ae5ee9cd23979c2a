# The dev environment. Project, regions, service, API and gateway ids must match
# deploy/environments/dev.toml (checked by `cargo xtask lint terraform`, xtask/release/src/lint/terraform.rs).

terraform {
  required_version = ">= 1.11"

  backend "gcs" {
    bucket = "items-dev-4821-tfstate"
    prefix = "terraform/items"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.43.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "7.43.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }
}

provider "google" {
  project = "items-dev-4821"
  region  = "europe-west1"
}

provider "google-beta" {
  project = "items-dev-4821"
  region  = "europe-west1"
}

module "items" {
  source = "../../modules/stack"

  project_id         = "items-dev-4821"
  environment        = "dev"
  service_name       = "items"
  api_id             = "items-api"
  gateway_account_id = "items-gateway"
  primary_region     = "europe-west1"

  regions = {
    europe-west1 = { gateway_id = "items-dev-euw1", subnet_cidr = "10.10.0.0/24" }
    us-central1  = { gateway_id = "items-dev-usc1", subnet_cidr = "10.10.1.0/24" }
  }

  # Small and disposable: scale to zero, zonal database, no deletion protection.
  min_instances         = 0
  max_instances         = 4
  concurrency           = 80
  cpu_boost             = true
  pool_max_size         = 8
  sql_tier              = "db-custom-1-3840"
  sql_availability_type = "ZONAL"
  sql_retained_backups  = 3
  deletion_protection   = false

  backend_deadline_seconds = 15
  latency_p95_threshold_ms = 2000
  error_ratio_threshold    = 0.05
  slo_goal                 = 0.99

  # CI's workload identity principal, allowed to impersonate the deployer.
  deployer_impersonators = []
  notification_channels  = var.notification_channels
}
