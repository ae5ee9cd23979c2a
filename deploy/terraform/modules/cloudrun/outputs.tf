output "service_name" {
  description = "Cloud Run service name (the same in every region)."
  value       = var.service_name
}

output "services" {
  description = "Region => { id, name, uri } of the service in that region; uri is the API Gateway backend address."
  value = {
    for region, service in google_cloud_run_v2_service.this : region => {
      id   = service.id
      name = service.name
      uri  = service.uri
    }
  }
}

output "runtime_service_account_email" {
  description = "Email of the runtime service account (`cargo xtask deploy` needs iam.serviceAccounts.actAs on it)."
  value       = google_service_account.runtime.email
}

output "runtime_service_account_id" {
  description = "Resource id of the runtime service account, for IAM bindings on it."
  value       = google_service_account.runtime.name
}

output "collector_config_secret_id" {
  description = "Secret holding the OpenTelemetry collector configuration."
  value       = google_secret_manager_secret.collector_config.id
}

output "migrate_job" {
  description = "The migrate job `cargo xtask deploy` points at each image and runs before any revision: its name and region."
  value = {
    name     = google_cloud_run_v2_job.migrate.name
    location = google_cloud_run_v2_job.migrate.location
  }
}

output "migrator_service_account_id" {
  description = "Resource id of the migrate job's service account; updating the job needs actAs on it."
  value       = google_service_account.migrator.name
}

output "page_token_key_secret_id" {
  description = "Secret holding the page-token HMAC key (its value is never an output)."
  value       = google_secret_manager_secret.page_token_key.id
}
