variable "project_id" {
  type        = string
  description = "Project of the deployer service account and everything it deploys to."
}

variable "account_id" {
  type        = string
  description = "Account id of the deployer service account `cargo xtask deploy` runs as."
  default     = "items-deployer"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.account_id))
    error_message = "account_id must be 6-30 lowercase letters, digits or hyphens."
  }
}

variable "impersonators" {
  type        = list(string)
  description = "IAM members (CI workload identity principals, release engineers' groups) allowed to impersonate the deployer."
  default     = []

  validation {
    condition     = alltrue([for m in var.impersonators : can(regex("^(user|group|serviceAccount|principal|principalSet):", m))])
    error_message = "impersonators must be user:, group:, serviceAccount:, principal: or principalSet: members (never public principals)."
  }
}

variable "cloud_run_services" {
  type        = map(string)
  description = "Region => Cloud Run service name the deployer rolls out (image, revision, traffic)."
}

variable "runtime_service_account_id" {
  type        = string
  description = "Resource id (projects/P/serviceAccounts/EMAIL) of the services' runtime account; deploying a revision needs actAs on it."
}

variable "migrate_job" {
  type = object({
    name     = string
    location = string
  })
  description = "The migrate job the deployer points at each image and runs (jobs.get, jobs.patch, jobs.run, executions.get)."
}

variable "migrator_service_account_id" {
  type        = string
  description = "Resource id of the migrate job's service account; updating the job needs actAs on it."
}

variable "gateway_service_account_id" {
  type        = string
  description = "Resource id of the gateway identity; creating an API config with gatewayServiceAccount needs actAs on it."
}

variable "api_id" {
  type        = string
  description = "API Gateway API whose configs the deployer creates and prunes."
}

variable "managed_service" {
  type        = string
  description = "The API's managed service; new configs are pushed to it through Service Management."
}

variable "gateways" {
  type        = map(string)
  description = "Region => gateway id whose api_config the deployer switches."
}

variable "artifact_registry_location" {
  type        = string
  description = "Location of the Docker repository images are pushed to (a region or multi-region such as europe)."
}

variable "artifact_registry_repository" {
  type        = string
  description = "Docker repository id in Artifact Registry."
  default     = "items"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]*[a-z0-9])?$", var.artifact_registry_repository))
    error_message = "artifact_registry_repository must be lowercase letters, digits and hyphens."
  }
}

variable "keep_images" {
  type        = number
  description = "Most recent image versions kept by the repository's cleanup policy."
  default     = 50

  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5 (rollbacks need old images)."
  }
}
