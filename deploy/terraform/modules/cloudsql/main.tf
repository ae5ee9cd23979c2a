# Cloud SQL for PostgreSQL with a private IP only, automated backups with point-in-time
# recovery, optional regional HA, deletion protection, a maintenance window, the application
# database, and two users with their passwords in Secret Manager (never in Terraform state):
# - the migrator (user_name), created through the Cloud SQL API, which makes it a member of
#   cloudsqlsuperuser: it owns the schema, and only the migrate job logs in as it;
# - the runtime user (runtime_user_name), NOT created here: every user the Cloud SQL API creates
#   gets cloudsqlsuperuser, CREATEROLE and CREATEDB ("About PostgreSQL users",
#   cloud.google.com/sql/docs/postgres/users). The migrate job (`items-service migrate` with
#   APP__DATABASE__RUNTIME_USER) creates it with SQL, with LOGIN and DML rights only, and sets
#   its password from the runtime secret below on every run.

resource "google_sql_database_instance" "this" {
  project             = var.project_id
  name                = var.instance_name
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = var.edition
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.private_network
      ssl_mode                                      = var.ssl_mode
      enable_private_path_for_google_cloud_services = true
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = var.maintenance_window.day
      hour         = var.maintenance_window.hour
      update_track = var.maintenance_window.update_track
    }

    dynamic "database_flags" {
      for_each = merge(var.database_flags, { max_connections = tostring(var.max_connections) })
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }

    insights_config {
      query_insights_enabled  = var.query_insights
      record_application_tags = var.query_insights
      record_client_address   = false
    }
  }
}

resource "google_sql_database" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = var.database_name
}

# Generated during apply and handed to Cloud SQL and Secret Manager through write-only
# arguments; bump password_version to rotate.
ephemeral "random_password" "db" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "google_sql_user" "app" {
  project             = var.project_id
  instance            = google_sql_database_instance.this.name
  name                = var.user_name
  type                = "BUILT_IN"
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.password_version
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

  depends_on = [google_sql_user.app]
}

# The runtime user's password: its first version. Rotate it with `cargo xtask rotate db-password`,
# which adds a version and runs the migrate job that sets it on the role (docs/deploy.md,
# "Rotating secrets"); a bump of runtime_password_version adds a version that reaches the role
# only at the job's next run.
ephemeral "random_password" "runtime" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "google_secret_manager_secret" "runtime_password" {
  project   = var.project_id
  secret_id = var.runtime_password_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "runtime_password" {
  secret                 = google_secret_manager_secret.runtime_password.id
  secret_data_wo         = ephemeral.random_password.runtime.result
  secret_data_wo_version = var.runtime_password_version

  # Running revisions read the version they started with until the next one rolls out.
  deletion_policy = "DISABLE"
}
