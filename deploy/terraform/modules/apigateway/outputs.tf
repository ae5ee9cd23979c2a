output "api_id" {
  description = "API Gateway API id."
  value       = google_api_gateway_api.this.api_id
}

output "managed_service" {
  description = "The API's managed service name; API keys and quotas are attached to it."
  value       = google_api_gateway_api.this.managed_service
}

output "gateway_service_account_email" {
  description = "Email of the gateway identity; `cargo xtask deploy` passes it as gatewayServiceAccount of every config."
  value       = google_service_account.gateway.email
}

output "gateway_service_account_id" {
  description = "Resource id of the gateway identity, for IAM bindings on it."
  value       = google_service_account.gateway.name
}

output "gateways" {
  description = "Region => { gateway_id, hostname, bootstrap_config_id }; hostname is {gateway}-{hash}.{region_code}.gateway.dev."
  value = {
    for region, gw in google_api_gateway_gateway.this : region => {
      gateway_id          = gw.gateway_id
      hostname            = gw.default_hostname
      bootstrap_config_id = google_api_gateway_api_config.bootstrap[region].api_config_id
    }
  }
}

output "api_key_names" {
  description = "Key name => resource name of the API keys."
  value       = { for k, key in google_apikeys_key.this : k => key.id }
}

output "api_key_strings" {
  description = "Key name => key string (sensitive)."
  value       = { for k, key in google_apikeys_key.this : k => key.key_string }
  sensitive   = true
}
