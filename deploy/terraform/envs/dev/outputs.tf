output "environment" {
  description = "Everything `cargo xtask deploy` and operators need: project, service, per-region service URL and gateway, API, managed service, service accounts, image repository, Cloud SQL (see modules/stack/README.md)."
  value       = module.items
}
