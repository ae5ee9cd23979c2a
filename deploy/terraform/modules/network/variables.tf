variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the network."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "name" {
  type        = string
  description = "Name of the VPC; subnets and the private services range are named after it."

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase RFC 1035 label of at most 52 characters."
  }
}

variable "subnets" {
  type        = map(string)
  description = "Region => primary CIDR range of the subnet Cloud Run uses for Direct VPC egress in that region (at least a /26; Cloud Run takes addresses in blocks of 16)."

  validation {
    condition     = length(var.subnets) > 0
    error_message = "At least one region needs a subnet."
  }

  validation {
    condition = alltrue([
      for cidr in values(var.subnets) : can(cidrhost(cidr, 0)) && tonumber(split("/", cidr)[1]) <= 26
    ])
    error_message = "Every subnet must be a valid IPv4 CIDR range of /26 or larger."
  }
}

variable "private_services_prefix_length" {
  type        = number
  description = "Prefix length of the range reserved for private services access (Cloud SQL private IP)."
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 16 && var.private_services_prefix_length <= 24
    error_message = "private_services_prefix_length must be between 16 and 24."
  }
}

variable "flow_log_sampling" {
  type        = number
  description = "Fraction of VPC flow logs kept on the Cloud Run subnets (0 turns flow logs off)."
  default     = 0.1

  validation {
    condition     = var.flow_log_sampling >= 0 && var.flow_log_sampling <= 1
    error_message = "flow_log_sampling must be between 0 and 1."
  }
}
