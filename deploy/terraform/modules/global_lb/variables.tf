variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the load balancer."
}

variable "name" {
  type        = string
  description = "Name of the load balancer's resources (NEGs get -<region>)."

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,40}[a-z0-9]$", var.name))
    error_message = "name is lowercase letters, digits and hyphens, at most 42 characters."
  }
}

variable "gateways" {
  type        = map(string)
  description = "Region => API Gateway gateway id in that region (one serverless NEG each)."

  validation {
    condition     = length(var.gateways) > 0
    error_message = "At least one gateway is needed."
  }
}

variable "domains" {
  type        = list(string)
  description = "Domains of the Google-managed certificate; each must resolve to the load balancer's address before the certificate becomes active."

  validation {
    condition     = length(var.domains) > 0
    error_message = "At least one domain is needed."
  }
}

variable "drained_regions" {
  type        = list(string)
  description = "Regions whose gateway gets no traffic (manual failover, see the multi-region runbook in docs/deploy.md)."
  default     = []
}

variable "outlier_consecutive_errors" {
  type        = number
  description = "Consecutive 5xx answers from a region's gateway after which outlier detection ejects it."
  default     = 5
}

variable "log_sample_rate" {
  type        = number
  description = "Share of requests the load balancer logs (0 to 1)."
  default     = 1
}
