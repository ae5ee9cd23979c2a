variable "project_id" {
  type        = string
  description = "Project whose Cloud Monitoring workspace gets the dashboard, alerts, uptime checks and SLO."
}

variable "environment" {
  type        = string
  description = "Environment name, shown in display names."

  validation {
    condition     = contains(["dev", "stage", "prod"], var.environment)
    error_message = "environment must be dev, stage or prod."
  }
}

variable "service_name" {
  type        = string
  description = "Cloud Run service name the metrics are filtered on."
}

variable "cloudsql_database_id" {
  type        = string
  description = "Cloud SQL database_id label (PROJECT:INSTANCE) for the connections chart."

  validation {
    condition     = length(split(":", var.cloudsql_database_id)) == 2
    error_message = "cloudsql_database_id must be PROJECT:INSTANCE."
  }
}

variable "gateway_managed_service" {
  type        = string
  description = "The API's managed service (modules/apigateway output managed_service): the service label of the api monitored resource its gateways report to."
}

variable "gateway_hosts" {
  type        = map(string)
  description = "Region => gateway hostname ({gateway}-{hash}.{region_code}.gateway.dev) probed by an uptime check."
}

variable "uptime_check_path" {
  type        = string
  description = "Path probed through each gateway; it must be routed by the gateway's API config."
  default     = "/health/live"

  validation {
    condition     = startswith(var.uptime_check_path, "/")
    error_message = "uptime_check_path must start with /."
  }
}

variable "uptime_api_key" {
  type        = string
  description = "API key sent as x-api-key by the uptime checks (the header is masked in the console)."
  sensitive   = true
}

variable "latency_p95_threshold_ms" {
  type        = number
  description = "Alert when the p95 request latency over 5 minutes stays above this many milliseconds."
  default     = 1000

  validation {
    condition     = var.latency_p95_threshold_ms > 0
    error_message = "latency_p95_threshold_ms must be positive."
  }
}

variable "error_ratio_threshold" {
  type        = number
  description = "Alert when the share of 5xx responses over 5 minutes stays above this ratio."
  default     = 0.02

  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold must be between 0 and 1."
  }
}

variable "slo_goal" {
  type        = number
  description = "Availability SLO over a rolling 28 days: share of requests that are not 5xx."
  default     = 0.995

  validation {
    condition     = var.slo_goal > 0 && var.slo_goal < 1
    error_message = "slo_goal must be between 0 and 1 (exclusive)."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids (projects/P/notificationChannels/N) every alert goes to."
  default     = []
}
