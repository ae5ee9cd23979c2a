output "instance_name" {
  description = "Cloud SQL instance name."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "PROJECT:REGION:INSTANCE, for the Cloud Run Cloud SQL volume (/cloudsql/<connection_name>)."
  value       = google_sql_database_instance.this.connection_name
}

output "private_ip" {
  description = "Private IP address of the instance (reachable over Direct VPC egress)."
  value       = google_sql_database_instance.this.private_ip_address
}

output "database_name" {
  description = "Application database name (APP__DATABASE__DBNAME)."
  value       = google_sql_database.app.name
}

output "user_name" {
  description = "Application user name (APP__DATABASE__USER)."
  value       = google_sql_user.app.name
}

output "password_secret_id" {
  description = "Full id (projects/P/secrets/S) of the secret holding the password."
  value       = google_secret_manager_secret.db_password.id
}

output "password_secret_name" {
  description = "Short secret id, as Cloud Run's secret volume expects it."
  value       = google_secret_manager_secret.db_password.secret_id
}

output "max_connections" {
  description = "The max_connections flag the instance runs with."
  value       = var.max_connections
}
