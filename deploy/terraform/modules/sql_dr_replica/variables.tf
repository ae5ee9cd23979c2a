variable "project_id" {
  type        = string
  description = "Google Cloud project of the primary and the replica."
}

variable "name" {
  type        = string
  description = "Name of the replica instance."
}

variable "region" {
  type        = string
  description = "Region of the replica: not the primary's."
}

variable "primary_instance_name" {
  type        = string
  description = "Name of the primary instance the replica follows."
}

variable "database_version" {
  type        = string
  description = "PostgreSQL major version: the primary's."
  default     = "POSTGRES_17"
}

variable "tier" {
  type        = string
  description = "Machine tier: the primary's, so that a promoted replica carries the same load."
}

variable "edition" {
  type        = string
  description = "ENTERPRISE or ENTERPRISE_PLUS (advanced disaster recovery needs ENTERPRISE_PLUS on both)."
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.edition)
    error_message = "edition is ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "private_network" {
  type        = string
  description = "VPC self link with private services access (the primary's network)."
}

variable "ssl_mode" {
  type        = string
  description = "The primary's ssl_mode: after a promotion clients must connect the same way."
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the replica against deletion (Terraform and the Cloud SQL API)."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels of the replica."
  default     = {}
}
