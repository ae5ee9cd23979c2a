# The stage environment. Project, regions, service, API and gateway ids must match
# deploy/environments/stage.toml (checked by `cargo xtask lint terraform`, xtask/release/src/lint/terraform.rs).

terraform {
  required_version = ">= 1.11"

  backend "gcs" {
    bucket = "items-stage-4821-tfstate"
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
  project = "items-stage-4821"
  region  = "europe-west1"
}

provider "google-beta" {
  project = "items-stage-4821"
  region  = "europe-west1"
}

module "items" {
  source = "../../modules/stack"

  project_id         = "items-stage-4821"
  environment        = "stage"
  service_name       = "items"
  api_id             = "items-api"
  gateway_account_id = "items-gateway"
  primary_region     = "europe-west1"

  regions = {
    europe-west1 = { gateway_id = "items-stage-euw1", subnet_cidr = "10.20.0.0/24" }
    us-central1  = { gateway_id = "items-stage-usc1", subnet_cidr = "10.20.1.0/24" }
  }

  # Production-shaped but smaller: zonal database, deletion protection on.
  min_instances         = 0
  max_instances         = 10
  concurrency           = 80
  cpu_boost             = true
  pool_max_size         = 16
  sql_tier              = "db-custom-2-7680"
  sql_availability_type = "ZONAL"
  sql_retained_backups  = 7
  deletion_protection   = true

  backend_deadline_seconds = 15
  latency_p95_threshold_ms = 1000
  error_ratio_threshold    = 0.02
  slo_goal                 = 0.995

  deployer_impersonators = []
  notification_channels  = var.notification_channels
}
