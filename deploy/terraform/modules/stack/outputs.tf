output "project_id" {
  description = "Project of the environment."
  value       = var.project_id
}

output "service_name" {
  description = "Cloud Run service name (every region)."
  value       = module.cloudrun.service_name
}

output "regions" {
  description = "Region => { service_uri, gateway_id, gateway_hostname, bootstrap_config_id }: what `cargo xtask deploy` rolls out onto."
  value = {
    for region, service in module.cloudrun.services : region => {
      service_uri         = service.uri
      gateway_id          = module.apigateway.gateways[region].gateway_id
      gateway_hostname    = module.apigateway.gateways[region].hostname
      bootstrap_config_id = module.apigateway.gateways[region].bootstrap_config_id
    }
  }
}

output "api_id" {
  description = "API Gateway API id."
  value       = module.apigateway.api_id
}

output "managed_service" {
  description = "The API's managed service name."
  value       = module.apigateway.managed_service
}

output "gateway_service_account" {
  description = "Gateway identity email; must equal `gateway_service_account` in deploy/environments/<env>.toml."
  value       = module.apigateway.gateway_service_account_email
}

output "runtime_service_account" {
  description = "Email of the Cloud Run runtime service account."
  value       = module.cloudrun.runtime_service_account_email
}

output "deployer_service_account" {
  description = "Email of the service account `cargo xtask deploy` impersonates."
  value       = module.deployer.email
}

output "image_repository" {
  description = "Artifact Registry Docker repository for `cargo xtask image`."
  value       = module.deployer.image_repository
}

output "cloudsql_connection_name" {
  description = "Cloud SQL connection name (PROJECT:REGION:INSTANCE)."
  value       = try(module.cloudsql[0].connection_name, null)
}

output "cloudsql_private_ip" {
  description = "Private IP of the Cloud SQL instance."
  value       = try(module.cloudsql[0].private_ip, null)
}

output "page_token_key_secret" {
  description = "Secret Manager secret with the page-token HMAC key (never its value)."
  value       = module.cloudrun.page_token_key_secret_id
}

output "db_password_secret" {
  description = "Secret Manager secret with the database password."
  value       = local.database.password_secret_id
}

output "max_connections" {
  description = "Cloud SQL max_connections computed from regions x max instances x pool size."
  value       = local.max_connections
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard id."
  value       = module.monitoring.dashboard_id
}
