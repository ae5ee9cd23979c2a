variable "project_id" {
  type        = string
  description = "Google Cloud project of the API, its configs and gateways."
}

variable "api_id" {
  type        = string
  description = "API Gateway API id (deploy/environments/<env>.toml `api_id`)."

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.api_id))
    error_message = "api_id must be at most 63 lowercase letters, digits or hyphens."
  }
}

variable "gateway_account_id" {
  type        = string
  description = "Account id of the service account gateways call Cloud Run with (the local part of `gateway_service_account` in deploy/environments/<env>.toml)."
  default     = "items-gateway"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.gateway_account_id))
    error_message = "gateway_account_id must be 6-30 lowercase letters, digits or hyphens."
  }
}

variable "regions" {
  type = map(object({
    gateway_id   = string
    service_name = string
    backend_url  = string
  }))
  description = "Region => gateway id, Cloud Run service name and its URL in that region; each gateway calls the backend in its own region."

  validation {
    condition     = alltrue([for r in values(var.regions) : can(regex("^[a-z0-9]([-a-z0-9]{0,47}[a-z0-9])?$", r.gateway_id))])
    error_message = "Every gateway_id must be lowercase letters, digits and hyphens (at most 49, so the bootstrap config id stays under 63)."
  }

  validation {
    condition     = alltrue([for r in values(var.regions) : startswith(r.backend_url, "https://")])
    error_message = "Every backend_url must be an https:// URL."
  }
}

variable "backend_deadline_seconds" {
  type        = number
  description = "Seconds the gateway waits for Cloud Run in the bootstrap config (API Gateway's default is 15)."
  default     = 15

  validation {
    condition     = var.backend_deadline_seconds > 0 && var.backend_deadline_seconds <= 300
    error_message = "backend_deadline_seconds must be in (0, 300]."
  }
}

variable "api_keys" {
  type        = map(string)
  description = "Key name => display name of API keys to create, each restricted to this API's managed service."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.api_keys) : can(regex("^[a-z0-9-]{1,40}$", k))])
    error_message = "API key names must be 1-40 lowercase letters, digits or hyphens."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the API, configs and gateways."
  default     = {}
}
