# API Gateway (google-beta): the API, one bootstrap config and one gateway per region, the
# gateway's identity with run.invoker on each service only, the managed service enabled and
# API keys restricted to it. `cargo xtask deploy` creates the real configs and switches the
# gateways to them, so Terraform ignores each gateway's api_config after creation.

locals {
  bootstrap_documents = {
    for region, r in var.regions : region => templatefile("${path.module}/bootstrap-openapi.yaml.tftpl", {
      title       = var.api_id
      backend_url = r.backend_url
      deadline    = var.backend_deadline_seconds
    })
  }
}

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = var.gateway_account_id
  display_name = "API Gateway backend identity (${var.api_id})"
  description  = "Identity API Gateway uses to call Cloud Run; run.invoker on each service only."
}

resource "google_cloud_run_v2_service_iam_member" "gateway_invoker" {
  for_each = var.regions

  project  = var.project_id
  location = each.key
  name     = each.value.service_name
  role     = "roles/run.invoker"
  member   = google_service_account.gateway.member
}

resource "google_api_gateway_api" "this" {
  provider = google-beta

  project      = var.project_id
  api_id       = var.api_id
  display_name = var.api_id
  labels       = var.labels
}

resource "google_api_gateway_api_config" "bootstrap" {
  provider = google-beta
  for_each = var.regions

  project       = var.project_id
  api           = google_api_gateway_api.this.api_id
  api_config_id = "${each.value.gateway_id}-boot-${substr(sha256(local.bootstrap_documents[each.key]), 0, 8)}"
  display_name  = "bootstrap ${each.key}"
  labels        = var.labels

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(local.bootstrap_documents[each.key])
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "this" {
  provider = google-beta
  for_each = var.regions

  project      = var.project_id
  region       = each.key
  gateway_id   = each.value.gateway_id
  display_name = each.value.gateway_id
  api_config   = google_api_gateway_api_config.bootstrap[each.key].id
  labels       = var.labels

  lifecycle {
    # Rolled out by `cargo xtask deploy` (PATCH …/gateways/{gw}?updateMask=apiConfig).
    ignore_changes = [api_config]
  }

  depends_on = [google_cloud_run_v2_service_iam_member.gateway_invoker]
}

# The API's managed service (<api_id>-<hash>.apigateway.<project>.cloud.goog) must be enabled
# in the project before API keys can be checked against it.
resource "google_project_service" "managed_service" {
  project            = var.project_id
  service            = google_api_gateway_api.this.managed_service
  disable_on_destroy = false

  depends_on = [google_api_gateway_api_config.bootstrap]
}

resource "google_apikeys_key" "this" {
  for_each = var.api_keys

  project      = var.project_id
  name         = "${var.api_id}-${each.key}"
  display_name = each.value

  restrictions {
    api_targets {
      service = google_project_service.managed_service.service
    }
  }
}
