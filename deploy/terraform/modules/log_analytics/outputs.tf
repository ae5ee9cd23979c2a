output "bucket_name" {
  description = "Full name of the log bucket (projects/P/locations/L/buckets/B)."
  value       = google_logging_project_bucket_config.this.id
}

output "dataset" {
  description = "PROJECT.DATASET of the linked BigQuery dataset: replaces PROJECT.DATASET in deploy/log-analytics/*.sql."
  value       = "${var.project_id}.${google_logging_linked_dataset.this.link_id}"
}

output "sink_filter" {
  description = "The filter of the sink, i.e. which log entries reach the bucket."
  value       = google_logging_project_sink.this.filter
}
