# The identity `cargo xtask deploy` runs as, with exactly what it needs:
#
# | what xtask does                                   | grant                                             | scope                    |
# |---------------------------------------------------|---------------------------------------------------|--------------------------|
# | push the image                                    | roles/artifactregistry.writer                     | the Docker repository    |
# | services.get / services.patch, list revisions     | roles/run.developer                               | each Cloud Run service   |
# | deploy revisions running as the runtime account   | roles/iam.serviceAccountUser                      | the runtime account      |
# | get, patch, run the migrate job, its executions  | roles/run.developer                               | the migrate job          |
# | update the job running as the migrator account   | roles/iam.serviceAccountUser                      | the migrator account     |
# | poll Cloud Run / API Gateway operations           | custom role: run.operations.get, apigateway.operations.get | project         |
# | create, list, delete API configs                  | roles/apigateway.admin                            | the API                  |
# | push the config to the managed service            | roles/servicemanagement.configEditor              | the managed service      |
# | create configs with gatewayServiceAccount         | roles/iam.serviceAccountUser                      | the gateway account      |
# | switch a gateway to a new config                  | roles/apigateway.admin                            | each gateway             |

resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = var.account_id
  display_name = "cargo xtask deploy"
  description  = "Rolls out Cloud Run revisions/traffic and API Gateway configs; see deploy/terraform/modules/deployer/README.md."
}

resource "google_service_account_iam_member" "impersonators" {
  for_each = toset(var.impersonators)

  service_account_id = google_service_account.deployer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.artifact_registry_location
  repository_id = var.artifact_registry_repository
  format        = "DOCKER"
  description   = "Images of the items service, pushed by cargo xtask image."

  docker_config {
    immutable_tags = true
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.keep_images
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "7776000s" # 90 days
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.deployer.member
}

resource "google_cloud_run_v2_service_iam_member" "developer" {
  for_each = var.cloud_run_services

  project  = var.project_id
  location = each.key
  name     = each.value
  role     = "roles/run.developer"
  member   = google_service_account.deployer.member
}

# The migrate job: get, patch (its image) and run it, read its executions.
resource "google_cloud_run_v2_job_iam_member" "migrate" {
  project  = var.project_id
  location = var.migrate_job.location
  name     = var.migrate_job.name
  role     = "roles/run.developer"
  member   = google_service_account.deployer.member
}

resource "google_service_account_iam_member" "act_as" {
  for_each = {
    runtime  = var.runtime_service_account_id
    gateway  = var.gateway_service_account_id
    migrator = var.migrator_service_account_id
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

resource "google_project_iam_custom_role" "operations" {
  project     = var.project_id
  role_id     = replace("${var.account_id}_operations", "-", "_")
  title       = "Poll deploy operations"
  description = "Read long-running operations of Cloud Run and API Gateway (cargo xtask deploy waits on them)."
  permissions = ["run.operations.get", "apigateway.operations.get"]
}

resource "google_project_iam_member" "operations" {
  project = var.project_id
  role    = google_project_iam_custom_role.operations.id
  member  = google_service_account.deployer.member
}

resource "google_api_gateway_api_iam_member" "configs" {
  provider = google-beta

  project = var.project_id
  api     = var.api_id
  role    = "roles/apigateway.admin"
  member  = google_service_account.deployer.member
}

resource "google_endpoints_service_iam_member" "config_editor" {
  service_name = var.managed_service
  role         = "roles/servicemanagement.configEditor"
  member       = google_service_account.deployer.member
}

resource "google_api_gateway_gateway_iam_member" "rollout" {
  provider = google-beta
  for_each = var.gateways

  project = var.project_id
  region  = each.key
  gateway = each.value
  role    = "roles/apigateway.admin"
  member  = google_service_account.deployer.member
}
