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
  description = "The runtime user (APP__DATABASE__USER of the service): DML rights only, created by the migrate job."
  value       = var.runtime_user_name
}

output "password_secret_id" {
  description = "Full id (projects/P/secrets/S) of the secret holding the runtime user's password."
  value       = google_secret_manager_secret.runtime_password.id
}

output "password_secret_name" {
  description = "Short id of the runtime password secret, as Cloud Run's secret volume expects it."
  value       = google_secret_manager_secret.runtime_password.secret_id
}

output "migrator_user_name" {
  description = "The migrator, owner of the schema (APP__DATABASE__USER of the migrate job)."
  value       = google_sql_user.app.name
}

output "migrator_password_secret_id" {
  description = "Full id of the secret holding the migrator's password."
  value       = google_secret_manager_secret.db_password.id
}

output "migrator_password_secret_name" {
  description = "Short id of the migrator's password secret, for the migrate job's secret volume."
  value       = google_secret_manager_secret.db_password.secret_id
}

output "max_connections" {
  description = "The max_connections flag the instance runs with."
  value       = var.max_connections
}

output "server_ca_pem" {
  description = "PEM of every CA the instance trusts (current and upcoming): the service's APP__DATABASE__TLS_CA_PEM when it connects on the private IP (verify-ca)."
  value       = join("", data.google_sql_ca_certs.this.certs[*].cert)
}

output "iam_user_name" {
  description = "The runtime service account's IAM database user (its email without .gserviceaccount.com), or \"\" without iam_authentication."
  value       = var.iam_authentication ? google_sql_user.runtime_iam[0].name : ""
}
