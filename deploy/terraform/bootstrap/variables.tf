variable "state_projects" {
  type        = map(string)
  description = "Environment => project id; each project gets a bucket <project>-tfstate (the name envs/<env>/main.tf's backend uses)."
  default = {
    dev   = "items-dev-4821"
    stage = "items-stage-4821"
    prod  = "items-prod-4821"
  }

  validation {
    condition     = alltrue([for p in values(var.state_projects) : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p))])
    error_message = "Every value must be a Google Cloud project id."
  }
}

variable "location" {
  type        = string
  description = "Location of the state buckets (a multi-region such as EU keeps state available through a regional outage)."
  default     = "EU"
}

variable "state_versions_kept" {
  type        = number
  description = "Noncurrent state versions kept per object before the oldest are deleted."
  default     = 50

  validation {
    condition     = var.state_versions_kept >= 1
    error_message = "state_versions_kept must be at least 1."
  }
}
