variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the log bucket, the sink and the linked dataset."
}

variable "service_name" {
  type        = string
  description = "Cloud Run service whose logs are routed (resource.labels.service_name)."
}

variable "gateway_ids" {
  type        = list(string)
  description = "API Gateway gateway ids whose request logs are routed (resource.labels.gateway_id)."
  default     = []
}

variable "location" {
  type        = string
  description = "Location of the log bucket (and of its linked dataset): global or a region."
  default     = "global"
}

variable "bucket_id" {
  type        = string
  description = "Id of the log bucket."

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{1,100}$", var.bucket_id))
    error_message = "bucket_id is up to 100 letters, digits, underscores, hyphens and periods."
  }
}

variable "dataset_id" {
  type        = string
  description = "Id of the linked BigQuery dataset (the link id): letters, digits and underscores."

  validation {
    condition     = can(regex("^[a-zA-Z0-9_]{1,100}$", var.dataset_id))
    error_message = "dataset_id is up to 100 letters, digits and underscores."
  }
}

variable "retention_days" {
  type        = number
  description = "Days the bucket keeps log entries (1 to 3650; beyond 30 days storage is billed)."
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650
    error_message = "retention_days is between 1 and 3650."
  }
}
