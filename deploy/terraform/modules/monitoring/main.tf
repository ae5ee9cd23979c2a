# Dashboard (request count, p50/p95/p99 latency, error ratio, instances, database
# connections), alerts on p95 latency and error ratio, an uptime check through each gateway,
# and a request-based availability SLO with a fast-burn alert.
#
# Errors are counted where clients see them: at the gateways. API Gateway reports every request
# of the API's managed service as serviceruntime.googleapis.com/api/request_count on the `api`
# monitored resource, labelled with the service (Cloud Monitoring API, Service.CloudEndpoints:
# "Corresponds to the service resource label in the api monitored resource"; API Gateway
# "Monitoring your API") and response_code_class. That count holds the backend's 5xx, which the
# gateway passes on, and the gateway's own (upstream timeouts and resets, 502/503/504), which
# Cloud Run's request_count never sees. The Cloud Run ratio stays on the dashboard and in the
# alert as a second condition, to tell the two apart.

locals {
  run     = "monitored_resource=\"cloud_run_revision\",service_name=\"${var.service_name}\""
  rate    = "sum by (location) (rate(run_googleapis_com:request_count{${local.run}}[5m]))"
  errors  = "sum by (location) (rate(run_googleapis_com:request_count{${local.run},response_code_class=\"5xx\"}[5m]))"
  buckets = "sum by (le, location) (rate(run_googleapis_com:request_latencies_bucket{${local.run}}[5m]))"

  error_ratio = "${local.errors} / ${local.rate}"

  api           = "monitored_resource=\"api\",service=\"${var.gateway_managed_service}\""
  gw_rate       = "sum by (location) (rate(serviceruntime_googleapis_com:api_request_count{${local.api}}[5m]))"
  gw_errors     = "sum by (location) (rate(serviceruntime_googleapis_com:api_request_count{${local.api},response_code_class=\"5xx\"}[5m]))"
  gateway_ratio = "${local.gw_errors} / ${local.gw_rate}"

  charts = [
    { title = "Requests per second", queries = [local.rate] },
    {
      title = "Latency (ms): p50, p95, p99"
      queries = [
        "histogram_quantile(0.50, ${local.buckets})",
        "histogram_quantile(0.95, ${local.buckets})",
        "histogram_quantile(0.99, ${local.buckets})",
      ]
    },
    { title = "Error ratio (5xx / all): gateways, Cloud Run", queries = [local.gateway_ratio, local.error_ratio] },
    { title = "Instances", queries = ["sum by (location, state) (run_googleapis_com:container_instance_count{${local.run}})"] },
    {
      title   = "Database connections"
      queries = ["sum(cloudsql_googleapis_com:database_postgresql_num_backends{monitored_resource=\"cloudsql_database\",database_id=\"${var.cloudsql_database_id}\"})"]
    },
  ]

  run_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.service_name}\" AND metric.type=\"run.googleapis.com/request_count\""
  api_filter = "resource.type=\"api\" AND resource.labels.service=\"${var.gateway_managed_service}\" AND metric.type=\"serviceruntime.googleapis.com/api/request_count\""
}

resource "google_monitoring_dashboard" "this" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${var.service_name} (${var.environment})"
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, chart in local.charts : {
          xPos   = (i % 2) * 24
          yPos   = floor(i / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [
                for q in chart.queries : {
                  plotType        = "LINE"
                  timeSeriesQuery = { prometheusQuery = q }
                }
              ]
            }
          }
        }
      ]
    }
  })
}

resource "google_monitoring_alert_policy" "latency_p95" {
  project               = var.project_id
  display_name          = "${var.service_name} (${var.environment}): p95 latency above ${var.latency_p95_threshold_ms} ms"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "p95 latency > ${var.latency_p95_threshold_ms} ms for 5 minutes"
    condition_prometheus_query_language {
      query               = "histogram_quantile(0.95, ${local.buckets}) > ${var.latency_p95_threshold_ms}"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "p95 latency of Cloud Run service `${var.service_name}` is above ${var.latency_p95_threshold_ms} ms. Check the dashboard, recent `cargo xtask deploy` rollouts and Cloud SQL load."
  }
}

resource "google_monitoring_alert_policy" "error_ratio" {
  project               = var.project_id
  display_name          = "${var.service_name} (${var.environment}): 5xx ratio above ${var.error_ratio_threshold}"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Gateways: 5xx ratio > ${var.error_ratio_threshold} for 5 minutes"
    condition_prometheus_query_language {
      query               = "(${local.gateway_ratio}) > ${var.error_ratio_threshold}"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  conditions {
    display_name = "Cloud Run: 5xx ratio > ${var.error_ratio_threshold} for 5 minutes"
    condition_prometheus_query_language {
      query               = "(${local.error_ratio}) > ${var.error_ratio_threshold}"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.error_ratio_threshold * 100}% of requests to `${var.service_name}` fail with 5xx at the gateways (their own upstream errors included) or at Cloud Run. Check Error Reporting and roll traffic back with `cargo xtask deploy` if a new revision is the cause."
  }
}

resource "google_monitoring_uptime_check_config" "gateway" {
  for_each = var.gateway_hosts

  project      = var.project_id
  display_name = "${var.service_name} (${var.environment}) via gateway ${each.key}"
  timeout      = "10s"
  period       = "60s"
  checker_type = "STATIC_IP_CHECKERS"

  http_check {
    path           = var.uptime_check_path
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"
    mask_headers   = true
    headers = {
      "x-api-key" = var.uptime_api_key
    }

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = each.value
    }
  }
}

resource "google_monitoring_alert_policy" "uptime" {
  project               = var.project_id
  display_name          = "${var.service_name} (${var.environment}): gateway uptime check failing"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  dynamic "conditions" {
    for_each = google_monitoring_uptime_check_config.gateway
    content {
      display_name = "Uptime check through ${conditions.key} failing"
      condition_threshold {
        filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND metric.label.check_id=\"${conditions.value.uptime_check_id}\" AND resource.type=\"uptime_url\""
        comparison      = "COMPARISON_GT"
        threshold_value = 1
        duration        = "120s"

        aggregations {
          alignment_period     = "1200s"
          per_series_aligner   = "ALIGN_NEXT_OLDER"
          cross_series_reducer = "REDUCE_COUNT_FALSE"
          group_by_fields      = ["resource.label.*"]
        }

        trigger {
          count = 1
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "GET ${var.uptime_check_path} through API Gateway fails from several checker locations."
  }
}

resource "google_monitoring_custom_service" "this" {
  project      = var.project_id
  service_id   = "${var.service_name}-${var.environment}"
  display_name = "${var.service_name} (${var.environment})"
}

resource "google_monitoring_slo" "availability" {
  project             = var.project_id
  service             = google_monitoring_custom_service.this.service_id
  slo_id              = "availability"
  display_name        = "${format("%.1f", var.slo_goal * 100)}% of requests are not 5xx (28 days)"
  goal                = var.slo_goal
  rolling_period_days = 28

  request_based_sli {
    good_total_ratio {
      total_service_filter = local.api_filter
      bad_service_filter   = "${local.api_filter} AND metric.labels.response_code_class=\"5xx\""
    }
  }
}

# Fast burn: at 10x the allowed error rate the 28-day budget is gone in under 3 days.
resource "google_monitoring_alert_policy" "slo_burn" {
  project               = var.project_id
  display_name          = "${var.service_name} (${var.environment}): availability SLO burning fast"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Burn rate over 1 hour > 10"
    condition_threshold {
      filter          = "select_slo_burn_rate(\"${google_monitoring_slo.availability.name}\", \"3600s\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 10
      duration        = "0s"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The availability SLO of `${var.service_name}` burns its error budget more than 10 times faster than sustainable."
  }
}
