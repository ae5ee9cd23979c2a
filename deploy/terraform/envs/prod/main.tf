# The prod environment. Project, regions, service, API and gateway ids must match
# deploy/environments/prod.toml (checked by `cargo xtask lint terraform`, xtask/release/src/lint/terraform.rs).

terraform {
  required_version = ">= 1.11"

  backend "gcs" {
    bucket = "items-prod-4821-tfstate"
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
  project = "items-prod-4821"
  region  = "europe-west1"
}

provider "google-beta" {
  project = "items-prod-4821"
  region  = "europe-west1"
}

module "items" {
  source = "../../modules/stack"

  project_id         = "items-prod-4821"
  environment        = "prod"
  service_name       = "items"
  api_id             = "items-api"
  gateway_account_id = "items-gateway"
  primary_region     = "europe-west1"

  regions = {
    europe-west1    = { gateway_id = "items-prod-euw1", subnet_cidr = "10.30.0.0/24" }
    us-central1     = { gateway_id = "items-prod-usc1", subnet_cidr = "10.30.1.0/24" }
    asia-northeast1 = { gateway_id = "items-prod-asn1", subnet_cidr = "10.30.2.0/24" }
  }

  # Warm instances in every region, regional (HA) database with PITR and deletion protection.
  min_instances         = 1
  max_instances         = 20
  concurrency           = 80
  cpu_boost             = true
  pool_max_size         = 8
  cpu                   = "2"
  memory                = "1Gi"
  sql_tier              = "db-custom-4-16384"
  sql_availability_type = "REGIONAL"
  sql_disk_size_gb      = 50
  sql_retained_backups  = 30
  sql_maintenance_window = {
    day          = 7
    hour         = 3
    update_track = "stable"
  }
  deletion_protection = true

  backend_deadline_seconds = 15
  latency_p95_threshold_ms = 800
  error_ratio_threshold    = 0.01
  slo_goal                 = 0.999

  deployer_impersonators = []
  notification_channels  = var.notification_channels
}
