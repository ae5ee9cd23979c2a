variable "project_id" {
  type        = string
  description = "Google Cloud project of the services."
}

variable "environment" {
  type        = string
  description = "Deployment environment, passed to the service as APP_ENVIRONMENT."

  validation {
    condition     = contains(["dev", "stage", "prod"], var.environment)
    error_message = "environment must be dev, stage or prod."
  }
}

variable "service_name" {
  type        = string
  description = "Cloud Run service name, the same in every region (deploy/environments/<env>.toml `service`)."

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be a lowercase RFC 1035 label of at most 49 characters."
  }
}

variable "regions" {
  type = map(object({
    network    = string
    subnetwork = string
  }))
  description = "Region => VPC and subnet used for Direct VPC egress; one service is created per region."

  validation {
    condition     = length(var.regions) > 0
    error_message = "At least one region is needed."
  }
}

variable "runtime_account_id" {
  type        = string
  description = "Account id of the runtime service account the service runs as."
  default     = "items-run"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.runtime_account_id))
    error_message = "runtime_account_id must be 6-30 lowercase letters, digits or hyphens."
  }
}

variable "bootstrap_image" {
  type        = string
  description = "Image of the first revision only; `cargo xtask deploy` owns the image afterwards (ignored by Terraform)."
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "cpu" {
  type        = string
  description = "vCPU limit of the application container."
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "memory" {
  type        = string
  description = "Memory limit of the application container, e.g. 512Mi or 1Gi."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be like 512Mi or 1Gi."
  }
}

variable "min_instances" {
  type        = number
  description = "Minimum instances per region (0 lets the service scale to zero)."
  default     = 0

  validation {
    condition     = var.min_instances >= 0
    error_message = "min_instances must not be negative."
  }
}

variable "max_instances" {
  type        = number
  description = "Maximum instances per region and revision; also sizes Cloud SQL max_connections."

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "concurrency" {
  type        = number
  description = "Maximum concurrent requests per instance."
  default     = 80

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be between 1 and 1000."
  }
}

variable "cpu_boost" {
  type        = bool
  description = "Give the instance extra CPU while it starts."
  default     = true
}

variable "cpu_idle" {
  type        = bool
  description = "Throttle CPU outside requests (request-based billing). Set false to keep the OpenTelemetry collector exporting between requests."
  default     = false
}

variable "request_timeout_seconds" {
  type        = number
  description = "Maximum time a request may take; keep it above the API Gateway backend deadline."
  default     = 60

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be between 1 and 3600."
  }
}

variable "database" {
  type = object({
    connection_name      = string
    private_ip           = string
    name                 = string
    user                 = string
    password_secret_id   = string
    password_secret_name = string
    pool_max_size        = number
    connect_via          = string
    tls_ca_pem           = optional(string, "")
    iam_user             = optional(string, "")
  })
  description = "Cloud SQL settings: connection name (Cloud SQL volume), private IP, database, user, password secret (full id for IAM, short name for the volume), pool size (APP__DATABASE__POOL__MAX_SIZE), connect_via = unix_socket (/cloudsql/…) or private_ip, the server CA's PEM for TLS verify-ca on the private IP (\"\": no TLS) and the runtime service account's IAM database user (\"\": password login)."

  validation {
    condition     = contains(["unix_socket", "private_ip"], var.database.connect_via)
    error_message = "database.connect_via must be unix_socket or private_ip."
  }

  validation {
    condition     = var.database.pool_max_size >= 1 && var.database.pool_max_size <= 100
    error_message = "database.pool_max_size must be between 1 and 100."
  }
}

variable "collector" {
  type = object({
    image  = string
    config = string
    cpu    = optional(string, "1")
    memory = optional(string, "256Mi")
  })
  description = "OpenTelemetry collector sidecar: image (Google-built otelcol-google), its YAML config (stored in Secret Manager and mounted at /etc/otelcol-google/config.yaml) and resources."

  validation {
    condition     = length(trimspace(var.collector.config)) > 0
    error_message = "collector.config must not be empty."
  }
}

variable "env" {
  type        = map(string)
  description = "Extra plain environment variables for the application container (APP__SECTION__KEY overrides)."
  default     = {}
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the services from Terraform."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the services and the collector secret."
  default     = {}
}

variable "page_token_key_version" {
  type        = number
  description = "Version of the Terraform-generated page-token key: 1 creates the environment's first key (Secret Manager version 1). Rotations add versions with `cargo xtask rotate page-token` instead; a bump adds a generated version that nothing uses until a pin names it."
  default     = 1

  validation {
    condition     = var.page_token_key_version >= 1
    error_message = "page_token_key_version must be at least 1."
  }
}

variable "page_token_signing_key_version" {
  type        = string
  description = "Secret Manager version number of the page-token key that signs (mounted as /page-token/current). Pinned, never \"latest\": instances read the key once at start-up, so a new version must verify everywhere before anything signs with it. Set the value `cargo xtask rotate page-token` prints."
  default     = "1"

  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.page_token_signing_key_version))
    error_message = "page_token_signing_key_version must be a Secret Manager version number such as \"3\" (not \"latest\")."
  }
}

variable "page_token_verify_key_versions" {
  type        = list(string)
  description = "Secret Manager version numbers of page-token keys that only verify tokens (mounted as /page-token/verify-<n>, listed in APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES): the next key during a rotation's `add` phase, the previous ones until `retire`. Set the value `cargo xtask rotate page-token` prints."
  default     = []

  validation {
    condition     = alltrue([for v in var.page_token_verify_key_versions : can(regex("^[1-9][0-9]*$", v))])
    error_message = "page_token_verify_key_versions must be Secret Manager version numbers such as \"3\"."
  }

  validation {
    condition     = !contains(var.page_token_verify_key_versions, var.page_token_signing_key_version)
    error_message = "page_token_verify_key_versions must not list the signing version."
  }
}

variable "migrator" {
  type = object({
    region               = string
    user                 = string
    password_secret_id   = string
    password_secret_name = string
    schedule             = optional(string, "17 * * * *")
  })
  description = "The migrate job: its region (one of regions, where Cloud SQL is), the migrator database user (owner of the schema) and its password secret (full id for IAM, short name for the volume), and the cron schedule (UTC) of its hourly run, which prunes expired idempotency keys."

  validation {
    condition     = length(split(" ", var.migrator.schedule)) == 5
    error_message = "migrator.schedule must be a five-field cron expression."
  }
}
