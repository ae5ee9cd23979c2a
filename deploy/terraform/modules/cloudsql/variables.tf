variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the instance and the password secret."
}

variable "region" {
  type        = string
  description = "Region of the primary instance (with availability_type REGIONAL the standby is in another zone of it)."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "instance_name" {
  type        = string
  description = "Cloud SQL instance name. Names are reserved for about a week after deletion."

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,96}[a-z0-9]$", var.instance_name))
    error_message = "instance_name must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "database_version" {
  type        = string
  description = "PostgreSQL major version, e.g. POSTGRES_17."
  default     = "POSTGRES_17"

  validation {
    condition     = can(regex("^POSTGRES_[0-9]+$", var.database_version))
    error_message = "database_version must be POSTGRES_<major>."
  }
}

variable "edition" {
  type        = string
  description = "Cloud SQL edition: ENTERPRISE or ENTERPRISE_PLUS (set explicitly: newer PostgreSQL versions default to ENTERPRISE_PLUS)."
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.edition)
    error_message = "edition must be ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "tier" {
  type        = string
  description = "Machine tier, e.g. db-custom-2-7680 (ENTERPRISE) or db-perf-optimized-N-4 (ENTERPRISE_PLUS)."

  validation {
    condition     = can(regex("^db-", var.tier))
    error_message = "tier must be a Cloud SQL tier name starting with db-."
  }
}

variable "availability_type" {
  type        = string
  description = "ZONAL, or REGIONAL for a synchronous standby in a second zone (use REGIONAL in prod)."

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.availability_type)
    error_message = "availability_type must be ZONAL or REGIONAL."
  }
}

variable "disk_size_gb" {
  type        = number
  description = "Initial SSD size in GB; the disk grows automatically."
  default     = 20

  validation {
    condition     = var.disk_size_gb >= 10
    error_message = "disk_size_gb must be at least 10."
  }
}

variable "private_network" {
  type        = string
  description = "VPC self link or id with private services access (network module output private_network). The instance gets no public IP."
}

variable "ssl_mode" {
  type        = string
  description = "ENCRYPTED_ONLY (the default): clients come through the Cloud SQL connector (/cloudsql unix socket) or connect to the private IP with TLS, verifying the instance's CA (output server_ca_pem). ALLOW_UNENCRYPTED_AND_ENCRYPTED would also accept plaintext."
  default     = "ENCRYPTED_ONLY"

  validation {
    condition     = contains(["ENCRYPTED_ONLY", "ALLOW_UNENCRYPTED_AND_ENCRYPTED", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"], var.ssl_mode)
    error_message = "ssl_mode must be ENCRYPTED_ONLY, ALLOW_UNENCRYPTED_AND_ENCRYPTED or TRUSTED_CLIENT_CERTIFICATE_REQUIRED."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the instance against deletion, both in Terraform and in the Cloud SQL API."
  default     = true
}

variable "backup_start_time" {
  type        = string
  description = "UTC start (HH:MM) of the daily automated backup window."
  default     = "02:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.backup_start_time))
    error_message = "backup_start_time must be HH:MM (UTC)."
  }
}

variable "retained_backups" {
  type        = number
  description = "Number of automated daily backups kept."
  default     = 7

  validation {
    condition     = var.retained_backups >= 1 && var.retained_backups <= 365
    error_message = "retained_backups must be between 1 and 365."
  }
}

variable "transaction_log_retention_days" {
  type        = number
  description = "Days of write-ahead log kept for point-in-time recovery (1 to 7 for ENTERPRISE, up to 35 for ENTERPRISE_PLUS)."
  default     = 7

  validation {
    condition = (
      var.transaction_log_retention_days >= 1 &&
      var.transaction_log_retention_days <= (var.edition == "ENTERPRISE_PLUS" ? 35 : 7)
    )
    error_message = "transaction_log_retention_days must be 1-7 for ENTERPRISE and 1-35 for ENTERPRISE_PLUS."
  }
}

variable "maintenance_window" {
  type = object({
    day          = number
    hour         = number
    update_track = optional(string, "stable")
  })
  description = "Weekly maintenance window: day 1 (Monday) to 7, hour 0 to 23 UTC, update_track canary, stable or week5."
  default     = { day = 7, hour = 3 }

  validation {
    condition = (
      var.maintenance_window.day >= 1 && var.maintenance_window.day <= 7 &&
      var.maintenance_window.hour >= 0 && var.maintenance_window.hour <= 23 &&
      contains(["canary", "stable", "week5"], var.maintenance_window.update_track)
    )
    error_message = "maintenance_window needs day 1-7, hour 0-23 and update_track canary, stable or week5."
  }
}

variable "max_connections" {
  type        = number
  description = "PostgreSQL max_connections; size it with the formula in this module's README (regions x max instances x pool size x 2 + reserve)."

  validation {
    condition     = var.max_connections >= 25 && var.max_connections <= 262143
    error_message = "max_connections must be between 25 and 262143."
  }
}

variable "database_flags" {
  type        = map(string)
  description = "Extra PostgreSQL flags (max_connections is set from max_connections and must not be repeated here)."
  default     = {}

  validation {
    condition     = !contains(keys(var.database_flags), "max_connections")
    error_message = "Set max_connections through the max_connections variable."
  }
}

variable "query_insights" {
  type        = bool
  description = "Enable Query Insights (query plans and per-query latency in the console)."
  default     = true
}

variable "database_name" {
  type        = string
  description = "Name of the application database."
  default     = "items"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase PostgreSQL identifier."
  }
}

variable "user_name" {
  type        = string
  description = "Built-in PostgreSQL user that owns the schema (the migrator); only the migrate job logs in as it."
  default     = "items"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.user_name))
    error_message = "user_name must be a lowercase PostgreSQL identifier."
  }
}

variable "password_secret_id" {
  type        = string
  description = "Secret Manager secret id that holds the migrator's password (mounted into the migrate job as a file)."
  default     = "items-db-password"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.password_secret_id))
    error_message = "password_secret_id may only contain letters, digits, underscores and hyphens."
  }
}

variable "password_version" {
  type        = number
  description = "Bump to rotate the password: a new random password is written to the user and to a new secret version. The password never enters Terraform state (ephemeral resource and write-only arguments)."
  default     = 1

  validation {
    condition     = var.password_version >= 1 && floor(var.password_version) == var.password_version
    error_message = "password_version must be a positive integer."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the instance and the secret."
  default     = {}
}

variable "runtime_user_name" {
  type        = string
  description = "PostgreSQL user the service logs in as, with DML rights only; created by the migrate job, not by the Cloud SQL API (which would make it a cloudsqlsuperuser member)."
  default     = "items_runtime"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.runtime_user_name))
    error_message = "runtime_user_name must be a lowercase PostgreSQL identifier."
  }
}

variable "runtime_password_secret_id" {
  type        = string
  description = "Secret Manager secret id that holds the runtime user's password (mounted by Cloud Run as a file, and into the migrate job, which sets it on the role)."
  default     = "items-db-runtime-password"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.runtime_password_secret_id))
    error_message = "runtime_password_secret_id may only contain letters, digits, underscores and hyphens."
  }
}

variable "runtime_password_version" {
  type        = number
  description = "Bump to rotate the runtime user's password: a new secret version, set on the role by the next migrate job run and read by the next revision."
  default     = 1

  validation {
    condition     = var.runtime_password_version >= 1 && floor(var.runtime_password_version) == var.runtime_password_version
    error_message = "runtime_password_version must be a positive integer."
  }
}

variable "iam_authentication" {
  type        = bool
  description = "Cloud SQL IAM database authentication for the runtime service account: the cloudsql.iam_authentication flag, a CLOUD_IAM_SERVICE_ACCOUNT user and roles/cloudsql.instanceUser on this instance. The service then logs in with metadata-server access tokens over TLS (private IP only)."
  default     = false

  validation {
    condition     = !var.iam_authentication || var.runtime_service_account_email != ""
    error_message = "iam_authentication needs runtime_service_account_email."
  }
}

variable "runtime_service_account_email" {
  type        = string
  description = "Email of the Cloud Run runtime service account, the IAM database user when iam_authentication is on (\"\" otherwise)."
  default     = ""

  validation {
    condition     = var.runtime_service_account_email == "" || endswith(var.runtime_service_account_email, ".gserviceaccount.com")
    error_message = "runtime_service_account_email must be a service account email (…@….iam.gserviceaccount.com) or empty."
  }
}
