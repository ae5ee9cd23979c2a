variable "project_id" {
  type        = string
  description = "Google Cloud project of the environment (deploy/environments/<env>.toml `project_id`)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "environment" {
  type        = string
  description = "Environment name: dev, stage or prod."

  validation {
    condition     = contains(["dev", "stage", "prod"], var.environment)
    error_message = "environment must be dev, stage or prod."
  }
}

variable "service_name" {
  type        = string
  description = "Cloud Run service name in every region (toml `service`)."
}

variable "api_id" {
  type        = string
  description = "API Gateway API id (toml `api_id`)."
}

variable "gateway_account_id" {
  type        = string
  description = "Account id of the gateway identity; with project_id it must give the toml's `gateway_service_account`."
}

variable "regions" {
  type = map(object({
    gateway_id  = string
    subnet_cidr = string
  }))
  description = "Region => API Gateway id (toml `[[regions]]`) and the CIDR of that region's Cloud Run subnet."

  validation {
    condition     = length(var.regions) > 0
    error_message = "At least one region is needed."
  }
}

variable "primary_region" {
  type        = string
  description = "Region of the Cloud SQL primary and the Artifact Registry repository; one of the keys of regions."

  validation {
    condition     = contains(keys(var.regions), var.primary_region)
    error_message = "primary_region must be one of the regions."
  }
}

variable "cpu" {
  type        = string
  description = "vCPU of the application container."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory of the application container."
  default     = "512Mi"
}

variable "min_instances" {
  type        = number
  description = "Minimum Cloud Run instances per region."
  default     = 0
}

variable "max_instances" {
  type        = number
  description = "Maximum Cloud Run instances per region and revision."
}

variable "concurrency" {
  type        = number
  description = "Maximum concurrent requests per instance."
  default     = 80
}

variable "cpu_boost" {
  type        = bool
  description = "Startup CPU boost."
  default     = true
}

variable "pool_max_size" {
  type        = number
  description = "Database pool size per instance (APP__DATABASE__POOL__MAX_SIZE; the service's default is 16)."
  default     = 16

  validation {
    condition     = var.pool_max_size >= 1 && var.pool_max_size <= 100
    error_message = "pool_max_size must be between 1 and 100."
  }
}

variable "database_connect_via" {
  type        = string
  description = "unix_socket: APP__DATABASE__HOST=/cloudsql/CONNECTION (Cloud SQL connector, TLS enforced); private_ip: the instance's private IP over Direct VPC egress."
  default     = "unix_socket"

  validation {
    condition     = contains(["unix_socket", "private_ip"], var.database_connect_via)
    error_message = "database_connect_via must be unix_socket or private_ip."
  }
}

variable "database_iam_authentication" {
  type        = bool
  description = "Cloud SQL IAM database authentication: the service logs in as its runtime service account (an IAM database user) with access tokens from the metadata server instead of the runtime password; needs database_connect_via = private_ip (TLS). docs/deploy.md, \"Database connections\"."
  default     = false

  validation {
    condition     = !var.database_iam_authentication || var.database_connect_via == "private_ip"
    error_message = "database_iam_authentication needs database_connect_via = \"private_ip\" (the service verifies the instance's CA over TLS there)."
  }
}

variable "sql_tier" {
  type        = string
  description = "Cloud SQL machine tier."
}

variable "sql_edition" {
  type        = string
  description = "Cloud SQL edition (ENTERPRISE or ENTERPRISE_PLUS)."
  default     = "ENTERPRISE"
}

variable "sql_availability_type" {
  type        = string
  description = "ZONAL or REGIONAL (high availability; required in prod)."

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.sql_availability_type) && (var.environment != "prod" || var.sql_availability_type == "REGIONAL")
    error_message = "sql_availability_type must be ZONAL or REGIONAL, and REGIONAL in prod."
  }
}

variable "sql_disk_size_gb" {
  type        = number
  description = "Initial Cloud SQL disk size in GB (grows automatically)."
  default     = 20
}

variable "sql_retained_backups" {
  type        = number
  description = "Automated backups kept."
  default     = 7
}

variable "sql_maintenance_window" {
  type = object({
    day          = number
    hour         = number
    update_track = optional(string, "stable")
  })
  description = "Weekly Cloud SQL maintenance window (day 1-7, hour UTC, update track)."
  default     = { day = 7, hour = 3 }
}

variable "db_password_version" {
  type        = number
  description = "Bump to rotate the database password."
  default     = 1
}

variable "page_token_key_version" {
  type        = number
  description = "Version of the Terraform-generated page-token key (1: the environment's first key). Rotate with `cargo xtask rotate page-token` (docs/deploy.md, \"Rotating secrets\")."
  default     = 1
}

variable "page_token_signing_key_version" {
  type        = string
  description = "Secret Manager version of the page-token key that signs; the value `cargo xtask rotate page-token` prints."
  default     = "1"
}

variable "page_token_verify_key_versions" {
  type        = list(string)
  description = "Secret Manager versions of the page-token key that only verify; the value `cargo xtask rotate page-token` prints."
  default     = []
}

variable "deletion_protection" {
  type        = bool
  description = "Deletion protection on Cloud SQL and the Cloud Run services (always on in prod)."

  validation {
    condition     = var.environment != "prod" || var.deletion_protection
    error_message = "deletion_protection cannot be turned off in prod."
  }
}

variable "collector_image" {
  type        = string
  description = "Google-built OpenTelemetry collector image run as a sidecar."
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.131.0"
}

variable "collector_config_path" {
  type        = string
  description = "Path of the collector configuration; null means deploy/otel/collector.yaml of this repository."
  default     = null
}

variable "backend_deadline_seconds" {
  type        = number
  description = "Backend deadline of the bootstrap API configs (toml `[backend] deadline_seconds`)."
  default     = 15
}

variable "latency_p95_threshold_ms" {
  type        = number
  description = "p95 latency alert threshold in milliseconds."
  default     = 1000
}

variable "error_ratio_threshold" {
  type        = number
  description = "5xx ratio alert threshold."
  default     = 0.02
}

variable "slo_goal" {
  type        = number
  description = "Availability SLO goal over 28 days."
  default     = 0.995
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids for every alert."
  default     = []
}

variable "deployer_impersonators" {
  type        = list(string)
  description = "Members allowed to impersonate the deployer service account (e.g. the CI's workload identity principal)."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every labelled resource."
  default     = {}
}
