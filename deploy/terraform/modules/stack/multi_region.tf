# Multi-region (issue 22, point 5), off by default: a global external Application Load
# Balancer in front of every region's API Gateway gateway (serverless NEGs for API Gateway are
# Preview) and a cross-region Cloud SQL read replica for disaster recovery. The runbook is in
# README.md, "Multi-region".

variable "global_lb_domains" {
  type        = list(string)
  description = "Domains served by a global external Application Load Balancer in front of every region's gateway; empty: no load balancer."
  default     = []
}

variable "global_lb_drained_regions" {
  type        = list(string)
  description = "Regions whose gateway the load balancer sends no traffic (manual failover)."
  default     = []
}

variable "dr_replica_region" {
  type        = string
  description = "Region of a cross-region Cloud SQL read replica for disaster recovery; null: none. Not the primary region."
  default     = null

  validation {
    condition     = var.dr_replica_region == null || can(regex("^[a-z]+-[a-z]+[0-9]$", var.dr_replica_region))
    error_message = "dr_replica_region must look like us-central1."
  }
}

module "global_lb" {
  source = "../global_lb"
  count  = length(var.global_lb_domains) > 0 ? 1 : 0

  project_id      = var.project_id
  name            = "${var.service_name}-${var.environment}"
  gateways        = { for region, gw in module.apigateway.gateways : region => gw.gateway_id }
  domains         = var.global_lb_domains
  drained_regions = var.global_lb_drained_regions

  depends_on = [google_project_service.apis]
}

module "sql_dr_replica" {
  source = "../sql_dr_replica"
  count  = var.dr_replica_region != null && var.database_engine == "cloudsql" ? 1 : 0

  project_id            = var.project_id
  name                  = "${var.service_name}-${var.environment}-dr"
  region                = coalesce(var.dr_replica_region, var.primary_region)
  primary_instance_name = local.cloudsql.instance_name
  tier                  = var.sql_tier
  edition               = var.sql_edition
  private_network       = module.network.private_network
  ssl_mode              = var.database_connect_via == "unix_socket" ? "ENCRYPTED_ONLY" : "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
  deletion_protection   = var.deletion_protection
  labels                = local.labels
}

output "global_lb" {
  description = "{ ip_address, backend_service, negs } of the global load balancer (null without one)."
  value = length(var.global_lb_domains) > 0 ? {
    ip_address      = module.global_lb[0].ip_address
    backend_service = module.global_lb[0].backend_service
    negs            = module.global_lb[0].negs
  } : null
}

output "dr_replica" {
  description = "{ name, connection_name, private_ip } of the cross-region Cloud SQL replica (null without one)."
  value = length(module.sql_dr_replica) > 0 ? {
    name            = module.sql_dr_replica[0].name
    connection_name = module.sql_dr_replica[0].connection_name
    private_ip      = module.sql_dr_replica[0].private_ip
  } : null
}
