# The environment's database engine: Cloud SQL for PostgreSQL (today's
# default, modules/cloudsql) or AlloyDB for PostgreSQL (modules/alloydb). The service binary
# and its settings are the same; only the host, the database name, the password secret and the
# way of connecting change. See README.md, "Database options".

variable "database_engine" {
  type        = string
  description = "cloudsql (Cloud SQL for PostgreSQL) or alloydb (AlloyDB for PostgreSQL, private IP only)."
  default     = "cloudsql"

  validation {
    condition     = contains(["cloudsql", "alloydb"], var.database_engine)
    error_message = "database_engine is cloudsql or alloydb."
  }
}

variable "alloydb_cpu_count" {
  type        = number
  description = "vCPUs of the AlloyDB primary instance (database_engine = alloydb)."
  default     = 2
}

variable "alloydb_availability_type" {
  type        = string
  description = "REGIONAL (standby node in a second zone) or ZONAL, for database_engine = alloydb."
  default     = "REGIONAL"
}

variable "alloydb_ssl_mode" {
  type        = string
  description = "AlloyDB ssl_mode. ENCRYPTED_ONLY (the API default) refuses today's plaintext private-IP connections: keep ALLOW_UNENCRYPTED_AND_ENCRYPTED until the service speaks TLS to the database (issue 22, point 2)."
  default     = "ENCRYPTED_ONLY"
}

resource "google_project_service" "alloydb" {
  for_each = var.database_engine == "alloydb" ? toset(["alloydb.googleapis.com"]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "alloydb" {
  source = "../alloydb"
  count  = var.database_engine == "alloydb" ? 1 : 0

  project_id          = var.project_id
  region              = var.primary_region
  cluster_id          = "${var.service_name}-${var.environment}"
  network             = module.network.network_id
  availability_type   = var.alloydb_availability_type
  cpu_count           = var.alloydb_cpu_count
  max_connections     = local.max_connections
  ssl_mode            = var.alloydb_ssl_mode
  deletion_protection = var.deletion_protection
  retained_backups    = var.sql_retained_backups
  user_name           = replace(var.service_name, "-", "_")
  password_secret_id  = "${var.service_name}-db-password"
  password_version    = var.db_password_version
  labels              = local.labels

  # The cluster needs the private services access peering of modules/network.
  depends_on = [google_project_service.apis, google_project_service.alloydb, module.network]
}

# Existing environments keep their Cloud SQL instance: the call gained a count.
moved {
  from = module.cloudsql
  to   = module.cloudsql[0]
}

locals {
  cloudsql = var.database_engine == "cloudsql" ? module.cloudsql[0] : null
  alloydb  = var.database_engine == "alloydb" ? module.alloydb[0] : null

  # What modules/cloudrun needs; connection_name "" means no Cloud SQL volume and no
  # roles/cloudsql.client (AlloyDB is reached on its private IP, connect_via private_ip).
  database = var.database_engine == "cloudsql" ? {
    connection_name      = local.cloudsql.connection_name
    private_ip           = local.cloudsql.private_ip
    name                 = local.cloudsql.database_name
    user                 = local.cloudsql.user_name
    password_secret_id   = local.cloudsql.password_secret_id
    password_secret_name = local.cloudsql.password_secret_name
    pool_max_size        = var.pool_max_size
    connect_via          = var.database_connect_via
    # TLS (verify-ca) with the instance's CA on the private IP; the connector's socket needs none.
    tls_ca_pem = var.database_connect_via == "private_ip" ? local.cloudsql.server_ca_pem : ""
    iam_user   = local.cloudsql.iam_user_name
    } : {
    connection_name      = ""
    private_ip           = local.alloydb.private_ip
    name                 = local.alloydb.database_name
    user                 = local.alloydb.user_name
    password_secret_id   = local.alloydb.password_secret_id
    password_secret_name = local.alloydb.password_secret_name
    pool_max_size        = var.pool_max_size
    connect_via          = "private_ip"
    # Not wired for AlloyDB yet: its ssl_mode must then accept plaintext (alloydb_ssl_mode).
    tls_ca_pem = ""
    iam_user   = ""
  }

  # The migrate job's database user: Cloud SQL's migrator (created through the API, owner of the
  # schema). The AlloyDB module has one built-in user, which then both migrates and serves: no
  # DML-only runtime user with AlloyDB yet (docs/deploy.md, "Database options").
  migrator = var.database_engine == "cloudsql" ? {
    user                 = local.cloudsql.migrator_user_name
    password_secret_id   = local.cloudsql.migrator_password_secret_id
    password_secret_name = local.cloudsql.migrator_password_secret_name
    } : {
    user                 = local.alloydb.user_name
    password_secret_id   = local.alloydb.password_secret_id
    password_secret_name = local.alloydb.password_secret_name
  }

  # The Cloud SQL dashboard tile of modules/monitoring; AlloyDB has no tile there yet.
  cloudsql_database_id = var.database_engine == "cloudsql" ? "${var.project_id}:${local.cloudsql.instance_name}" : ""
}

output "database_engine" {
  description = "cloudsql or alloydb."
  value       = var.database_engine
}

output "alloydb_instance" {
  description = "Full name of the AlloyDB primary instance (null with Cloud SQL)."
  value       = try(module.alloydb[0].instance_name, null)
}
