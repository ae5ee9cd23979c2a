# Log Analytics (issue 22, point 3): the request logs of the service and of every regional
# gateway in a log bucket upgraded to Log Analytics, with a linked BigQuery dataset for the
# queries in deploy/log-analytics/. Kept in its own file so the stack's main.tf is unchanged.

variable "log_analytics" {
  type        = bool
  description = "Route the service's and the gateways' request logs to a Log Analytics bucket with a linked BigQuery dataset."
  default     = true
}

variable "log_analytics_retention_days" {
  type        = number
  description = "Days the Log Analytics bucket keeps request logs."
  default     = 30
}

resource "google_project_service" "log_analytics" {
  for_each = var.log_analytics ? toset(["logging.googleapis.com", "bigquery.googleapis.com"]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "log_analytics" {
  source = "../log_analytics"
  count  = var.log_analytics ? 1 : 0

  project_id     = var.project_id
  service_name   = var.service_name
  gateway_ids    = [for region, r in var.regions : r.gateway_id]
  bucket_id      = "${var.service_name}-${var.environment}-requests"
  dataset_id     = replace("${var.service_name}_${var.environment}_requests", "-", "_")
  retention_days = var.log_analytics_retention_days

  depends_on = [google_project_service.apis, google_project_service.log_analytics]
}

output "log_analytics_dataset" {
  description = "PROJECT.DATASET of the linked BigQuery dataset to put in deploy/log-analytics/*.sql (null without log analytics)."
  value       = var.log_analytics ? module.log_analytics[0].dataset : null
}
