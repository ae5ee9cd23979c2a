output "state_buckets" {
  description = "Environment => state bucket name."
  value       = { for env, bucket in google_storage_bucket.state : env => bucket.name }
}
