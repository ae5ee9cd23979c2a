output "ip_address" {
  description = "The load balancer's global IPv4 address: the A record of every domain."
  value       = google_compute_global_address.this.address
}

output "backend_service" {
  description = "Name of the backend service (for gcloud compute backend-services … --global)."
  value       = google_compute_backend_service.gateways.name
}

output "negs" {
  description = "Region => name of the serverless NEG of that region's gateway."
  value       = { for region, neg in google_compute_region_network_endpoint_group.gateway : region => neg.name }
}
