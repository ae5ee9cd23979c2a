output "name" {
  description = "Name of the replica instance (the argument of gcloud sql instances promote-replica / switchover)."
  value       = google_sql_database_instance.replica.name
}

output "connection_name" {
  description = "PROJECT:REGION:NAME of the replica: the Cloud Run services' connection after a promotion."
  value       = google_sql_database_instance.replica.connection_name
}

output "private_ip" {
  description = "Private IP of the replica."
  value       = google_sql_database_instance.replica.private_ip_address
}
