output "email" {
  description = "Email of the deployer service account (impersonate it to run `cargo xtask deploy`)."
  value       = google_service_account.deployer.email
}

output "image_repository" {
  description = "Docker repository URL images are pushed to: LOCATION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}
