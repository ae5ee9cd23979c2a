# The migrate job: `items-service migrate` of the image being rolled out, as the migrator
# database user (owner of the schema), before the new revision gets traffic. It applies pending
# migrations, creates or updates the runtime user (DML rights only, password from the runtime
# secret) and prunes expired idempotency keys. Cloud Run's "Jobs overview" lists database
# migrations among the uses of jobs; Cloud Scheduler runs it hourly as well, so pruning happens
# even when the service scales to zero ("Execute jobs on a schedule": the caller needs
# roles/run.invoker on the job).
# Owners: Terraform owns everything here except the container's image and the client, which
# `cargo xtask deploy` sets before it runs the job (docs/deploy.md "Schema changes" and "Who owns
# which field").

resource "google_service_account" "migrator" {
  project      = var.project_id
  account_id   = "${var.service_name}-migrate"
  display_name = "Cloud Run job: ${var.service_name} migrations (${var.environment})"
  description  = "Identity of the ${var.service_name}-migrate job: Cloud SQL client, the migrator and runtime database passwords, the page-token key (the settings check of ${var.environment})."
}

resource "google_project_iam_member" "migrator_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.migrator.member

  condition {
    title      = "only-${var.service_name}-instance-migrate"
    expression = local.only_this_instance
  }
}

resource "google_secret_manager_secret_iam_member" "migrator_secrets" {
  for_each = {
    migrator   = var.migrator.password_secret_id
    runtime    = var.database.password_secret_id
    page_token = google_secret_manager_secret.page_token_key.id
  }

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.migrator.member
}

resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  name                = "${var.service_name}-migrate"
  location            = var.migrator.region
  labels              = var.labels
  deletion_protection = var.deletion_protection

  template {
    task_count = 1

    template {
      service_account = google_service_account.migrator.email
      # Migrations set their own lock_timeout and statement_timeout; this bounds the whole run.
      timeout     = "1800s"
      max_retries = 1

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"

        network_interfaces {
          network    = var.regions[var.migrator.region].network
          subnetwork = var.regions[var.migrator.region].subnetwork
        }
      }

      containers {
        image = var.bootstrap_image
        args  = ["migrate"]

        dynamic "env" {
          for_each = merge({
            APP_ENVIRONMENT                      = var.environment
            APP__DATABASE__HOST                  = local.database_host
            APP__DATABASE__USER                  = var.migrator.user
            APP__DATABASE__DBNAME                = var.database.name
            APP__DATABASE__PASSWORD_FILE         = "${local.secrets_dir}/${local.password_file}"
            APP__DATABASE__RUNTIME_USER          = var.database.user
            APP__DATABASE__RUNTIME_PASSWORD_FILE = "/runtime-password/${local.password_file}"
            APP__API__PAGE_TOKEN_SECRET_FILE     = "${local.page_token_dir}/${local.page_token_file}"
            },
            local.database_tls_env,
            # The runtime service account's IAM database user gets the runtime user's grants.
            var.database.iam_user == "" ? {} : { APP__DATABASE__RUNTIME_IAM_USER = var.database.iam_user },
          )
          content {
            name  = env.key
            value = env.value
          }
        }

        volume_mounts {
          name       = "migrator-password"
          mount_path = local.secrets_dir
        }

        volume_mounts {
          name       = "runtime-password"
          mount_path = "/runtime-password"
        }

        volume_mounts {
          name       = "page-token"
          mount_path = local.page_token_dir
        }

        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }

      volumes {
        name = "migrator-password"
        secret {
          secret = var.migrator.password_secret_name
          items {
            version = "latest"
            path    = local.password_file
          }
        }
      }

      volumes {
        name = "runtime-password"
        secret {
          secret = var.database.password_secret_name
          items {
            version = "latest"
            path    = local.password_file
          }
        }
      }

      volumes {
        name = "page-token"
        secret {
          secret = google_secret_manager_secret.page_token_key.secret_id
          items {
            version = var.page_token_signing_key_version
            path    = local.page_token_file
          }
        }
      }

      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [var.database.connection_name]
        }
      }
    }
  }

  lifecycle {
    # `cargo xtask deploy` points the job at its image before running it.
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [
    google_project_iam_member.migrator_cloudsql_client,
    google_secret_manager_secret_iam_member.migrator_secrets,
  ]
}

# Hourly run (pruning; a no-op for migrations already applied).
resource "google_service_account" "migrate_scheduler" {
  project      = var.project_id
  account_id   = "${var.service_name}-migrate-cron"
  display_name = "Cloud Scheduler: runs ${var.service_name}-migrate (${var.environment})"
  description  = "Calls the Cloud Run Admin API's jobs.run for the ${var.service_name}-migrate job."
}

resource "google_cloud_run_v2_job_iam_member" "migrate_scheduler" {
  project  = var.project_id
  location = google_cloud_run_v2_job.migrate.location
  name     = google_cloud_run_v2_job.migrate.name
  role     = "roles/run.invoker"
  member   = google_service_account.migrate_scheduler.member
}

resource "google_cloud_scheduler_job" "migrate" {
  project   = var.project_id
  name      = "${var.service_name}-migrate-hourly"
  region    = var.migrator.region
  schedule  = var.migrator.schedule
  time_zone = "Etc/UTC"

  http_target {
    # Cloud Run Admin API v2 projects.locations.jobs.run: POST https://run.googleapis.com/v2/{name}:run
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${google_cloud_run_v2_job.migrate.id}:run"

    oauth_token {
      service_account_email = google_service_account.migrate_scheduler.email
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.migrate_scheduler]
}
