# One Cloud Run v2 service per region, not publicly invokable, running as a dedicated
# service account that may only connect to Cloud SQL, read its secrets (database password,
# page-token key, collector config) and write telemetry.
# One owner per field (docs/deploy.md "Who owns which field", checked by `cargo xtask lint
# terraform`): `cargo xtask deploy` owns the app container's image, the template's annotations
# (its deploy id), the traffic split, the client and its lease and journal annotations; Terraform
# owns everything else; nobody names revisions (Cloud Run generates the names).

locals {
  app_port         = 8080
  secrets_dir      = "/secrets"
  password_file    = "db-password"
  collector_dir    = "/etc/otelcol-google"
  collector_health = 13133
  # The page-token key: its own volume (a secret volume shadows its whole directory, so it cannot
  # sit inside /secrets). The pinned signing version as `current`, the verify-only versions as
  # verify-<n>: never "latest", whose meaning changes under running instances (they read the
  # files once, at start-up). `cargo xtask rotate page-token` moves the pins in phases
  # (docs/deploy.md, "Rotating secrets").
  page_token_dir  = "/page-token"
  page_token_file = "current"
  page_token_verify_files = [
    for v in var.page_token_verify_key_versions : "${local.page_token_dir}/verify-${v}"
  ]

  # Cloud SQL has no instance-level IAM: project bindings are narrowed to the one instance.
  only_this_instance = "resource.name == \"projects/${var.project_id}/instances/${split(":", var.database.connection_name)[2]}\" && resource.service == \"sqladmin.googleapis.com\""

  database_host = (
    var.database.connect_via == "unix_socket"
    ? "/cloudsql/${var.database.connection_name}"
    : var.database.private_ip
  )

  # TLS to the private IP, verifying the instance's CA (verify-ca: Cloud SQL's certificate names
  # PROJECT:INSTANCE, not the IP); the Cloud SQL connector's socket needs none.
  database_tls_env = var.database.tls_ca_pem == "" ? {} : {
    APP__DATABASE__TLS_MODE   = "verify-ca"
    APP__DATABASE__TLS_CA_PEM = var.database.tls_ca_pem
  }

  app_env = merge(
    {
      APP_ENVIRONMENT               = var.environment
      APP__DATABASE__HOST           = local.database_host
      APP__DATABASE__USER           = var.database.user
      APP__DATABASE__DBNAME         = var.database.name
      APP__DATABASE__PASSWORD_FILE  = "${local.secrets_dir}/${local.password_file}"
      APP__DATABASE__POOL__MAX_SIZE = tostring(var.database.pool_max_size)
      # The service's own setting (api.page_token_secret_file); named here so that the
      # mount and the path the service reads cannot drift apart.
      APP__API__PAGE_TOKEN_SECRET_FILE = "${local.page_token_dir}/${local.page_token_file}"
      # OTLP/HTTP (the service speaks HTTP/protobuf): the collector sidecar's port 4318; the
      # service appends /v1/traces and /v1/metrics as the OpenTelemetry specification says.
      OTEL_EXPORTER_OTLP_ENDPOINT = "http://localhost:4318"
    },
    local.database_tls_env,
    # Cloud SQL IAM database authentication: the runtime service account logs in with access
    # tokens from the metadata server (the password file stays mounted, unused, to switch back).
    var.database.iam_user == "" ? {} : {
      APP__DATABASE__USER               = var.database.iam_user
      APP__DATABASE__IAM_AUTHENTICATION = "true"
    },
    length(local.page_token_verify_files) > 0 ? {
      APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES = join(",", local.page_token_verify_files)
    } : {},
    var.env,
  )
}

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.runtime_account_id
  display_name = "Cloud Run runtime: ${var.service_name} (${var.environment})"
  description  = "Identity of the ${var.service_name} service: Cloud SQL client, its secrets, metrics and traces."
}

# Cloud SQL has no instance-level IAM: the project binding is narrowed to the one instance
# with a condition.
resource "google_project_iam_member" "cloudsql_client" {
  count = var.database.connection_name == "" ? 0 : 1

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.runtime.member

  condition {
    title      = "only-${var.service_name}-instance"
    expression = local.only_this_instance
  }
}

# The binding gained a count (none with AlloyDB); existing environments keep theirs.
moved {
  from = google_project_iam_member.cloudsql_client
  to   = google_project_iam_member.cloudsql_client[0]
}

resource "google_project_iam_member" "telemetry" {
  for_each = toset(["roles/monitoring.metricWriter", "roles/cloudtrace.agent"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.runtime.member
}

resource "google_secret_manager_secret_iam_member" "db_password" {
  project   = var.project_id
  secret_id = var.database.password_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# The HMAC key that signs page tokens: its first version is generated during apply and written
# to Secret Manager through a write-only argument, so it is never in the repository, the plan or
# the state. Later versions are added by `cargo xtask rotate page-token`, which prints the pins
# (page_token_signing_key_version, page_token_verify_key_versions) to apply phase by phase;
# versions stay enabled (deletion_policy ABANDON) while a pin may name them.
ephemeral "random_password" "page_token_key" {
  length  = 64
  special = false
}

resource "google_secret_manager_secret" "page_token_key" {
  project   = var.project_id
  secret_id = "${var.service_name}-page-token-key"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "page_token_key" {
  secret                 = google_secret_manager_secret.page_token_key.id
  secret_data_wo         = ephemeral.random_password.page_token_key.result
  secret_data_wo_version = var.page_token_key_version
  deletion_policy        = "ABANDON"
}

resource "google_secret_manager_secret_iam_member" "page_token_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.page_token_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# The collector's configuration, mounted as a file into the sidecar.
resource "google_secret_manager_secret" "collector_config" {
  project   = var.project_id
  secret_id = "${var.service_name}-otel-collector-config"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "collector_config" {
  secret      = google_secret_manager_secret.collector_config.id
  secret_data = var.collector.config
}

resource "google_secret_manager_secret_iam_member" "collector_config" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.collector_config.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

resource "google_cloud_run_v2_service" "this" {
  for_each = var.regions

  project              = var.project_id
  name                 = var.service_name
  location             = each.key
  labels               = var.labels
  ingress              = "INGRESS_TRAFFIC_ALL" # API Gateway calls the run.app URL; IAM keeps everyone else out
  invoker_iam_disabled = false
  deletion_protection  = var.deletion_protection

  template {
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.request_timeout_seconds}s"
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"

      network_interfaces {
        network    = each.value.network
        subnetwork = each.value.subnetwork
      }
    }

    # The first container: deploy sets template[0].containers[0].image.
    containers {
      name       = "app"
      image      = var.bootstrap_image
      depends_on = ["collector"]

      ports {
        container_port = local.app_port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = var.cpu_idle
        startup_cpu_boost = var.cpu_boost
      }

      dynamic "env" {
        for_each = local.app_env
        content {
          name  = env.key
          value = env.value
        }
      }

      volume_mounts {
        name       = "db-password"
        mount_path = local.secrets_dir
      }

      volume_mounts {
        name       = "page-token"
        mount_path = local.page_token_dir
      }

      # No Cloud SQL volume when the database is not Cloud SQL (AlloyDB: connection_name "").
      dynamic "volume_mounts" {
        for_each = var.database.connection_name == "" ? [] : [1]
        content {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }

      # Readiness touches the database: a revision only takes traffic once it can serve.
      # Probed every second (the minimum; Cloud Run Admin API v2, Probe.periodSeconds): the
      # service is ready about 20 ms after it starts, so the probe at start fails and the next
      # decides. Every second, a new instance (a cold start, a new revision) waits 1 s for
      # traffic instead of 2; 60 failures keep the 60 s the service has to become ready.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 1
        timeout_seconds       = 1
        failure_threshold     = 60

        http_get {
          path = "/health/ready"
          port = local.app_port
        }
      }

      liveness_probe {
        period_seconds    = 10
        timeout_seconds   = 1
        failure_threshold = 3

        http_get {
          path = "/health/live"
          port = local.app_port
        }
      }
    }

    containers {
      name  = "collector"
      image = var.collector.image
      args  = ["--config=${local.collector_dir}/config.yaml"]

      resources {
        limits = {
          cpu    = var.collector.cpu
          memory = var.collector.memory
        }
      }

      volume_mounts {
        name       = "otel-config"
        mount_path = local.collector_dir
      }

      startup_probe {
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 60

        http_get {
          path = "/"
          port = local.collector_health
        }
      }
    }

    # Modes left at Cloud Run's default 0444: root owns secret volumes (second generation, and
    # every multi-container service) while the app runs as 65532, so 0400/0440 would be unreadable.
    volumes {
      name = "db-password"
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
        dynamic "items" {
          for_each = var.page_token_verify_key_versions
          content {
            version = items.value
            path    = "verify-${items.value}"
          }
        }
      }
    }

    dynamic "volumes" {
      for_each = var.database.connection_name == "" ? [] : [1]
      content {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [var.database.connection_name]
        }
      }
    }

    volumes {
      name = "otel-config"
      secret {
        secret = google_secret_manager_secret.collector_config.secret_id
        items {
          version = "latest"
          path    = "config.yaml"
        }
      }
    }
  }

  lifecycle {
    # Rolled out by `cargo xtask deploy` (Cloud Run Admin API services.patch): exactly the fields
    # deploy owns. Not template[0].revision: nobody sets it, so Terraform never re-sends a name
    # (a re-sent name with a changed template is refused with 409,
    # hashicorp/terraform-provider-google#14569) and Cloud Run names each new revision.
    ignore_changes = [
      template[0].containers[0].image,
      template[0].annotations,
      traffic,
      client,
      client_version,
      annotations["deploy.xtask.items/lease"],
      annotations["deploy.xtask.items/journal"],
    ]
  }

  depends_on = [
    google_project_iam_member.cloudsql_client,
    google_secret_manager_secret_iam_member.db_password,
    google_secret_manager_secret_iam_member.page_token_key,
    google_secret_manager_secret_version.page_token_key,
    google_secret_manager_secret_iam_member.collector_config,
    google_secret_manager_secret_version.collector_config,
  ]
}
