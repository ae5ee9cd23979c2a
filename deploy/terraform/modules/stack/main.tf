# One environment: APIs, network, Cloud SQL, Cloud Run in every region, API Gateway,
# monitoring and the deployer identity. envs/<env>/main.tf calls this with literal values
# that must match deploy/environments/<env>.toml (checked by `cargo xtask lint terraform`).

locals {
  labels = merge(var.labels, {
    app         = var.service_name
    environment = var.environment
    managed-by  = "terraform"
  })

  # Sizing rule, see modules/cloudsql/README.md: every region's instances may hold a full
  # pool, twice over while `cargo xtask deploy` shifts traffic between two revisions, plus a
  # reserve for migrations, maintenance sessions and Cloud SQL's superuser slots.
  connection_reserve = 15
  max_connections    = length(var.regions) * var.max_instances * var.pool_max_size * 2 + local.connection_reserve

  collector_config_path = coalesce(var.collector_config_path, "${path.module}/../../../otel/collector.yaml")

  apis = toset([
    "apigateway.googleapis.com",
    "apikeys.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicecontrol.googleapis.com",
    "servicemanagement.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "network" {
  source = "../network"

  project_id = var.project_id
  name       = "${var.service_name}-${var.environment}"
  subnets    = { for region, r in var.regions : region => r.subnet_cidr }

  depends_on = [google_project_service.apis]
}

# Every module waits for the project APIs: some of their resources (secrets, service accounts,
# the API) reference nothing that would order them after the APIs otherwise.
module "cloudsql" {
  source = "../cloudsql"
  count  = var.database_engine == "cloudsql" ? 1 : 0 # database_engine.tf

  project_id         = var.project_id
  region             = var.primary_region
  instance_name      = "${var.service_name}-${var.environment}"
  tier               = var.sql_tier
  edition            = var.sql_edition
  availability_type  = var.sql_availability_type
  disk_size_gb       = var.sql_disk_size_gb
  retained_backups   = var.sql_retained_backups
  maintenance_window = var.sql_maintenance_window
  private_network    = module.network.private_network
  # Encrypted either way: the connector's socket, or TLS to the private IP (verify-ca).
  ssl_mode            = "ENCRYPTED_ONLY"
  deletion_protection = var.deletion_protection
  max_connections     = local.max_connections
  database_name       = replace(var.service_name, "-", "_")
  user_name           = replace(var.service_name, "-", "_")
  password_secret_id  = "${var.service_name}-db-password"
  password_version    = var.db_password_version
  labels              = local.labels

  runtime_user_name          = "${replace(var.service_name, "-", "_")}_runtime"
  runtime_password_secret_id = "${var.service_name}-db-runtime-password"
  runtime_password_version   = var.db_password_version

  iam_authentication            = var.database_iam_authentication
  runtime_service_account_email = var.database_iam_authentication ? module.cloudrun.runtime_service_account_email : ""

  depends_on = [google_project_service.apis]
}

module "cloudrun" {
  source = "../cloudrun"

  project_id          = var.project_id
  environment         = var.environment
  service_name        = var.service_name
  runtime_account_id  = "${var.service_name}-run"
  cpu                 = var.cpu
  memory              = var.memory
  min_instances       = var.min_instances
  max_instances       = var.max_instances
  concurrency         = var.concurrency
  cpu_boost           = var.cpu_boost
  deletion_protection = var.deletion_protection
  labels              = local.labels

  page_token_key_version         = var.page_token_key_version
  page_token_signing_key_version = var.page_token_signing_key_version
  page_token_verify_key_versions = var.page_token_verify_key_versions

  regions = {
    for region, subnet in module.network.subnets : region => {
      network    = module.network.network_id
      subnetwork = subnet.id
    }
  }

  database = local.database # database_engine.tf: Cloud SQL or AlloyDB

  migrator = merge({ region = var.primary_region }, local.migrator) # database_engine.tf

  collector = {
    image  = var.collector_image
    config = file(local.collector_config_path)
  }

  depends_on = [google_project_service.apis]
}

module "apigateway" {
  source = "../apigateway"

  project_id               = var.project_id
  api_id                   = var.api_id
  gateway_account_id       = var.gateway_account_id
  backend_deadline_seconds = var.backend_deadline_seconds
  labels                   = local.labels

  regions = {
    for region, r in var.regions : region => {
      gateway_id   = r.gateway_id
      service_name = module.cloudrun.services[region].name
      backend_url  = module.cloudrun.services[region].uri
    }
  }

  api_keys = {
    uptime = "Uptime checks (${var.environment})"
  }

  depends_on = [google_project_service.apis]
}

module "monitoring" {
  source = "../monitoring"

  project_id               = var.project_id
  environment              = var.environment
  service_name             = var.service_name
  cloudsql_database_id     = local.cloudsql_database_id
  gateway_hosts            = { for region, gw in module.apigateway.gateways : region => gw.hostname }
  gateway_managed_service  = module.apigateway.managed_service
  uptime_api_key           = module.apigateway.api_key_strings["uptime"]
  latency_p95_threshold_ms = var.latency_p95_threshold_ms
  error_ratio_threshold    = var.error_ratio_threshold
  slo_goal                 = var.slo_goal
  notification_channels    = var.notification_channels

  depends_on = [google_project_service.apis]
}

module "deployer" {
  source = "../deployer"

  project_id                  = var.project_id
  account_id                  = "${var.service_name}-deployer"
  impersonators               = var.deployer_impersonators
  cloud_run_services          = { for region, s in module.cloudrun.services : region => s.name }
  runtime_service_account_id  = module.cloudrun.runtime_service_account_id
  migrate_job                 = module.cloudrun.migrate_job
  migrator_service_account_id = module.cloudrun.migrator_service_account_id
  gateway_service_account_id  = module.apigateway.gateway_service_account_id
  api_id                      = module.apigateway.api_id
  managed_service             = module.apigateway.managed_service
  gateways                    = { for region, gw in module.apigateway.gateways : region => gw.gateway_id }
  artifact_registry_location  = var.primary_region

  depends_on = [google_project_service.apis]
}
