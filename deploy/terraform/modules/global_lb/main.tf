# One global external Application Load Balancer in front of the environment's regional API
# Gateway gateways: a serverless NEG per region (API Gateway platform: Preview, and only in the
# google-beta provider's serverless_deployment block), one backend service over all of them
# with outlier detection, a Google-managed certificate for the environment's domain, and an
# HTTPS forwarding rule on a reserved global address.
#
# Sources: API Gateway "Load balancing for API Gateway" (Preview banner; a serverless NEG can
# only point at a gateway in its own region; all NEGs of one backend service must serve the
# same API config), Cloud Load Balancing "Serverless NEGs overview" (API Gateway support "is in
# Preview").

resource "google_compute_region_network_endpoint_group" "gateway" {
  provider = google-beta
  for_each = var.gateways

  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  region                = each.key
  network_endpoint_type = "SERVERLESS"

  serverless_deployment {
    platform = "apigateway.googleapis.com"
    resource = each.value
  }
}

resource "google_compute_backend_service" "gateways" {
  project               = var.project_id
  name                  = "${var.name}-gateways"
  description           = "The regional API Gateway gateways of ${var.name}; a region in drained_regions gets no traffic."
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  dynamic "backend" {
    for_each = {
      for region, neg in google_compute_region_network_endpoint_group.gateway : region => neg.id
      if !contains(var.drained_regions, region)
    }
    content {
      group = backend.value
    }
  }

  # Serverless NEGs take no health checks; a region whose gateway keeps answering 5xx is
  # ejected for base_ejection_time and its traffic goes to the other regions. Whether outlier
  # detection acts on API Gateway NEGs is not stated in Google's docs [not confirmed]; the
  # runbook drains a region by hand (drained_regions) when it does not.
  outlier_detection {
    consecutive_errors   = var.outlier_consecutive_errors
    max_ejection_percent = 50

    interval {
      seconds = 10
    }

    base_ejection_time {
      seconds = 60
    }
  }

  log_config {
    enable      = true
    sample_rate = var.log_sample_rate
  }
}

resource "google_compute_url_map" "this" {
  project         = var.project_id
  name            = var.name
  description     = "Everything to the regional gateways of ${var.name}."
  default_service = google_compute_backend_service.gateways.id
}

resource "google_compute_managed_ssl_certificate" "this" {
  project = var.project_id
  name    = var.name

  managed {
    domains = var.domains
  }
}

resource "google_compute_target_https_proxy" "this" {
  project          = var.project_id
  name             = var.name
  url_map          = google_compute_url_map.this.id
  ssl_certificates = [google_compute_managed_ssl_certificate.this.id]
}

resource "google_compute_global_address" "this" {
  project    = var.project_id
  name       = var.name
  ip_version = "IPV4"
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  target                = google_compute_target_https_proxy.this.id
  ip_address            = google_compute_global_address.this.id
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
