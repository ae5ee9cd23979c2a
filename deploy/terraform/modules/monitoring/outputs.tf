output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.this.id
}

output "alert_policy_ids" {
  description = "Names of the alert policies (latency_p95, error_ratio, uptime, slo_burn)."
  value = {
    latency_p95 = google_monitoring_alert_policy.latency_p95.name
    error_ratio = google_monitoring_alert_policy.error_ratio.name
    uptime      = google_monitoring_alert_policy.uptime.name
    slo_burn    = google_monitoring_alert_policy.slo_burn.name
  }
}

output "uptime_check_ids" {
  description = "Region => uptime check id."
  value       = { for region, check in google_monitoring_uptime_check_config.gateway : region => check.uptime_check_id }
}

output "slo_name" {
  description = "Full resource name of the availability SLO."
  value       = google_monitoring_slo.availability.name
}
