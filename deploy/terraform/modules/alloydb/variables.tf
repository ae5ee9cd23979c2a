variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the cluster and the password secret."
}

variable "region" {
  type        = string
  description = "Region of the cluster and its primary instance."
}

variable "cluster_id" {
  type        = string
  description = "AlloyDB cluster id; the primary instance is <cluster_id>-primary."

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,61}[a-z0-9]$", var.cluster_id))
    error_message = "cluster_id is lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "database_version" {
  type        = string
  description = "PostgreSQL major version of the cluster, e.g. POSTGRES_16."
  default     = "POSTGRES_16"
}

variable "network" {
  type        = string
  description = "VPC (projects/P/global/networks/N) with private services access; read it from the peering so the cluster waits for it."
}

variable "allocated_ip_range" {
  type        = string
  description = "Name of the private services access range to place the cluster in (null: any range of the peering)."
  default     = null
}

variable "availability_type" {
  type        = string
  description = "REGIONAL (active and standby node in two zones, automatic failover) or ZONAL."
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.availability_type)
    error_message = "availability_type is REGIONAL or ZONAL."
  }
}

variable "cpu_count" {
  type        = number
  description = "vCPUs of the primary instance (memory follows the machine shape AlloyDB picks)."
  default     = 2
}

variable "max_connections" {
  type        = number
  description = "The max_connections flag of the primary instance (same sizing rule as Cloud SQL, see modules/cloudsql/README.md)."
}

variable "ssl_mode" {
  type        = string
  description = "ENCRYPTED_ONLY (the API's default) or ALLOW_UNENCRYPTED_AND_ENCRYPTED (only while the service cannot speak TLS to the database)."
  default     = "ENCRYPTED_ONLY"

  validation {
    condition     = contains(["ENCRYPTED_ONLY", "ALLOW_UNENCRYPTED_AND_ENCRYPTED"], var.ssl_mode)
    error_message = "ssl_mode is ENCRYPTED_ONLY or ALLOW_UNENCRYPTED_AND_ENCRYPTED."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the cluster against deletion by Terraform (provider 7.0 argument)."
  default     = true
}

variable "retained_backups" {
  type        = number
  description = "Automated daily backups kept."
  default     = 14
}

variable "backup_start_hour" {
  type        = number
  description = "UTC hour the daily automated backup starts."
  default     = 3
}

variable "recovery_window_days" {
  type        = number
  description = "Days of continuous backup (point-in-time recovery window, 1 to 35)."
  default     = 14

  validation {
    condition     = var.recovery_window_days >= 1 && var.recovery_window_days <= 35
    error_message = "recovery_window_days is between 1 and 35."
  }
}

variable "maintenance_window" {
  type = object({
    day  = string
    hour = number
  })
  description = "Weekly maintenance window: day (MONDAY…SUNDAY) and UTC hour."
  default     = { day = "SUNDAY", hour = 4 }
}

variable "user_name" {
  type        = string
  description = "The application's database user."
}

variable "user_database_roles" {
  type        = list(string)
  description = "PostgreSQL roles granted to the application user (it owns its schema and runs the migrations)."
  default     = ["alloydbsuperuser"]
}

variable "password_secret_id" {
  type        = string
  description = "Secret Manager secret id that holds the application user's password."
}

variable "password_version" {
  type        = number
  description = "Bump to generate and store a new password (rotation)."
  default     = 1
}

variable "labels" {
  type        = map(string)
  description = "Labels of the cluster, instance and secret."
  default     = {}
}
