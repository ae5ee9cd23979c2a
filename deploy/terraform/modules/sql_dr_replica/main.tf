# A cross-region read replica of the Cloud SQL primary, for disaster recovery: it follows the
# primary asynchronously in another region, private IP only, and is promoted by the runbook
# (docs/deploy.md, "Multi-region") when the primary's region is lost.
#
# With Cloud SQL Enterprise Plus the replica can be the primary's designated DR replica
# (advanced disaster recovery: `gcloud sql instances switchover` with zero data loss, and
# replica failover `gcloud sql instances promote-replica --failover`); that designation is
# the primary's `replication_cluster.failover_dr_replica_name` and needs point-in-time
# recovery on the primary (Cloud SQL "Use advanced disaster recovery"). On Enterprise edition
# only a plain promotion is possible (the old primary is then not re-attached).

resource "google_sql_database_instance" "replica" {
  project              = var.project_id
  name                 = var.name
  region               = var.region
  database_version     = var.database_version
  master_instance_name = var.primary_instance_name
  deletion_protection  = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = var.edition
    availability_type           = "ZONAL"
    disk_type                   = "PD_SSD"
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = var.ssl_mode
    }
  }
}
