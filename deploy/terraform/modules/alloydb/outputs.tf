output "cluster_name" {
  description = "Full name of the cluster (projects/P/locations/R/clusters/C)."
  value       = google_alloydb_cluster.this.name
}

output "instance_name" {
  description = "Full name of the primary instance (gcloud alloydb instances failover …)."
  value       = google_alloydb_instance.primary.name
}

output "private_ip" {
  description = "Private IP of the primary instance: the service's APP__DATABASE__HOST."
  value       = google_alloydb_instance.primary.ip_address
}

output "database_name" {
  description = "Database the service uses: AlloyDB creates `postgres`; the migrations run there."
  value       = "postgres"
}

output "user_name" {
  description = "The application's database user."
  value       = google_alloydb_user.app.user_id
}

output "password_secret_id" {
  description = "Secret id of the application user's password."
  value       = google_secret_manager_secret.db_password.secret_id
}

output "password_secret_name" {
  description = "Full name of the password secret (projects/P/secrets/S)."
  value       = google_secret_manager_secret.db_password.name
}
