# A log bucket upgraded to Log Analytics, a sink that routes the service's and the gateways'
# request logs into it, and a BigQuery dataset linked to it, so that the committed queries in
# deploy/log-analytics/ run from BigQuery (and the Log Analytics page).
#
# Sources: Cloud Logging API (locations.buckets.links.create: "A log bucket may currently only
# contain one link"; linkId "alphanumeric characters and underscores"), LogSink.writerIdentity
# ("Sinks that have a destination that is a log bucket in the same project as the sink do not
# have a writer_identity and no additional permissions are required").

locals {
  # Cloud Run's stdout/stderr and request logs of the service, and API Gateway's request log
  # of the environment's gateways (resource apigateway.googleapis.com/Gateway, labels
  # gateway_id and location; shared gateway-facts §8).
  filter = join(" OR ", compact([
    "(resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${var.service_name}\")",
    length(var.gateway_ids) == 0 ? "" : "(resource.type = \"apigateway.googleapis.com/Gateway\" AND (${join(" OR ", [for id in var.gateway_ids : "resource.labels.gateway_id = \"${id}\""])}))",
  ]))
}

resource "google_logging_project_bucket_config" "this" {
  project          = var.project_id
  location         = var.location
  bucket_id        = var.bucket_id
  description      = "Request logs of ${var.service_name} and its gateways, upgraded to Log Analytics."
  retention_days   = var.retention_days
  enable_analytics = true
}

resource "google_logging_project_sink" "this" {
  project     = var.project_id
  name        = "${var.bucket_id}-sink"
  description = "Routes the request logs of ${var.service_name} and its gateways to ${var.bucket_id}."
  destination = "logging.googleapis.com/${google_logging_project_bucket_config.this.id}"
  filter      = local.filter
}

resource "google_logging_linked_dataset" "this" {
  link_id     = var.dataset_id
  bucket      = google_logging_project_bucket_config.this.id
  description = "Read-only BigQuery view of ${var.bucket_id} (deploy/log-analytics/*.sql)."
}
