# AlloyDB for PostgreSQL: a cluster on the environment's VPC (private services access, the same
# peering range as Cloud SQL), a primary instance (active and standby node in two zones unless
# ZONAL), automated and continuous backups, the application user with its password generated
# during apply and kept in Secret Manager only (write-only arguments, never in state).
#
# Sources: AlloyDB "High availability overview" (a primary has an active and a standby node in
# different zones; failover detection up to 30 s, start on the standby about 30 s, no data
# loss because WAL is written synchronously to the regional log persistor), AlloyDB API
# SslConfig.SslMode ("SSL mode not specified. Defaults to ENCRYPTED_ONLY"), AlloyDB Language
# Connectors overview (connectors for Java, Python, Go and Node.js; none for Rust; they "don't
# provide a network path", so private services access stays).

resource "google_alloydb_cluster" "this" {
  project             = var.project_id
  cluster_id          = var.cluster_id
  location            = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection
  labels              = var.labels

  network_config {
    network            = var.network
    allocated_ip_range = var.allocated_ip_range
  }

  automated_backup_policy {
    enabled       = true
    location      = var.region
    backup_window = "3600s"
    labels        = var.labels

    weekly_schedule {
      days_of_week = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]

      start_times {
        hours = var.backup_start_hour
      }
    }

    quantity_based_retention {
      count = var.retained_backups
    }
  }

  continuous_backup_config {
    enabled              = true
    recovery_window_days = var.recovery_window_days
  }

  maintenance_update_policy {
    maintenance_windows {
      day = var.maintenance_window.day

      start_time {
        hours = var.maintenance_window.hour
      }
    }
  }
}

resource "google_alloydb_instance" "primary" {
  cluster           = google_alloydb_cluster.this.name
  instance_id       = "${var.cluster_id}-primary"
  instance_type     = "PRIMARY"
  availability_type = var.availability_type
  labels            = var.labels

  database_flags = {
    max_connections = tostring(var.max_connections)
  }

  machine_config {
    cpu_count = var.cpu_count
  }

  client_connection_config {
    require_connectors = false

    ssl_config {
      ssl_mode = var.ssl_mode
    }
  }

  query_insights_config {
    record_application_tags = true
    record_client_address   = false
  }
}

# Generated during apply and handed to AlloyDB and Secret Manager through write-only
# arguments; bump password_version to rotate.
ephemeral "random_password" "db" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "google_alloydb_user" "app" {
  cluster             = google_alloydb_cluster.this.name
  user_id             = var.user_name
  user_type           = "ALLOYDB_BUILT_IN"
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.password_version
  database_roles      = var.user_database_roles

  depends_on = [google_alloydb_instance.primary]
}

resource "google_secret_manager_secret" "db_password" {
  project   = var.project_id
  secret_id = var.password_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  secret                 = google_secret_manager_secret.db_password.id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = var.password_version

  # Cloud Run mounts "latest"; keep old versions around (disabled) for a rollback window.
  deletion_policy = "DISABLE"

  depends_on = [google_alloydb_user.app]
}
