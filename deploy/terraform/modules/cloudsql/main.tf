# Cloud SQL for PostgreSQL with a private IP only, automated backups with point-in-time
# recovery, optional regional HA, deletion protection, a maintenance window, the application
# database, and two users with their passwords in Secret Manager (never in Terraform state):
# - the migrator (user_name), created through the Cloud SQL API, which makes it a member of
#   cloudsqlsuperuser: it owns the schema, and only the migrate job logs in as it;
# - the runtime user (runtime_user_name), NOT created here: every user the Cloud SQL API creates
#   gets cloudsqlsuperuser, CREATEROLE and CREATEDB ("About PostgreSQL users",
#   cloud.google.com/sql/docs/postgres/users). The migrate job (`items-service migrate` with
#   APP__DATABASE__RUNTIME_USER) creates it with SQL, with LOGIN and DML rights only, and sets
#   its password from the runtime secret below on every run;
# - with iam_authentication, the runtime service account as an IAM database user (Cloud SQL IAM
#   database authentication: an access token from the metadata server is its password), with
#   roles/cloudsql.instanceUser on this instance only; the migrate job grants it DML
#   (APP__DATABASE__RUNTIME_IAM_USER), since Cloud SQL gives it no privileges.
# The server's CA (every one the instance trusts: the current and, during a rotation, the next)
# is an output: the service verifies the server's certificate with it (TLS verify-ca) when it
# connects on the private IP; ssl_mode ENCRYPTED_ONLY refuses plaintext.

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
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = var.ssl_mode
      # A CA of this instance's own signs its certificate ("Per-instance CA: [...] an internal CA
      # dedicated to each Cloud SQL instance signs the server certificate for that instance",
      # cloud.google.com/sql/docs/postgres/authorize-ssl): trusting it pins this instance, which
      # the service's verify-ca relies on (the certificate names PROJECT:INSTANCE, not the IP).
      server_ca_mode                                = "GOOGLE_MANAGED_INTERNAL_CA"
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
      for_each = merge(
        var.database_flags,
        { max_connections = tostring(var.max_connections) },
        # Cloud SQL IAM database authentication ("Configure new instances for IAM database
        # authentication": the cloudsql.iam_authentication flag).
        var.iam_authentication ? { "cloudsql.iam_authentication" = "on" } : {},
      )
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

# The runtime service account as a database user. For PostgreSQL its name is the account's email
# "without the .gserviceaccount.com domain suffix" (cloud.google.com/sql/docs/postgres/iam-logins);
# it gets no privileges on creation ("When an IAM user is added to a database, the new database
# user has no privileges to any database by default"): the migrate job grants them.
resource "google_sql_user" "runtime_iam" {
  count = var.iam_authentication ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = trimsuffix(var.runtime_service_account_email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Logging in with IAM database authentication needs cloudsql.instances.login
# (roles/cloudsql.instanceUser, iam-logins "Before you begin"). Cloud SQL has no instance-level
# IAM: the project binding is narrowed to this instance.
resource "google_project_iam_member" "runtime_instance_user" {
  count = var.iam_authentication ? 1 : 0

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = "serviceAccount:${var.runtime_service_account_email}"

  condition {
    title      = "only-${var.instance_name}-login"
    expression = "resource.name == \"projects/${var.project_id}/instances/${google_sql_database_instance.this.name}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}

# Every CA the instance trusts ("all of the trusted Certificate Authorities (CAs) for the
# specified SQL database instance", the data source's documentation), so that during a server CA
# rotation the service trusts the upcoming CA as well as the current one; for its TLS verify-ca.
data "google_sql_ca_certs" "this" {
  project  = var.project_id
  instance = google_sql_database_instance.this.name
}
