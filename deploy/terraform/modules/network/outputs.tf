output "network_id" {
  description = "Id of the VPC (projects/P/global/networks/N)."
  value       = google_compute_network.this.id
}

output "network_name" {
  description = "Name of the VPC."
  value       = google_compute_network.this.name
}

output "private_network" {
  description = "VPC self link for Cloud SQL's ip_configuration.private_network; read from the peering so that Cloud SQL waits for private services access."
  value       = google_service_networking_connection.private_services.network
}

output "subnets" {
  description = "Region => { id, name } of the Cloud Run subnet in that region."
  value = {
    for region, subnet in google_compute_subnetwork.run : region => {
      id   = subnet.id
      name = subnet.name
    }
  }
}
