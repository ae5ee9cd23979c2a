//! Runs a [`Plan`]'s steps in order, journaling each change before it is sent so that a failure
//! or an interruption can be rolled back exactly (`journal.rs`). It decides nothing the plan has
//! not: where the world no longer matches what the plan was computed from, the step fails (a
//! config planned for reuse is gone or not ACTIVE, someone else changed the traffic or pointed the
//! gateway elsewhere) or, for pruning, is left out (a gateway serves the config by now).
//!
//! Every service patch is the service as this deploy last read or wrote it, with that etag, so a
//! change by anyone else in between fails it (`ABORTED`) instead of being overwritten. After the
//! canary hold the full-traffic step reads the service again: changed fields other than the
//! traffic (a Terraform apply) are kept; changed traffic fails the step.

use std::time::Duration;

use anyhow::{Context as _, bail};
use google_cloud_apigateway_v1::model::api_config;
use google_cloud_run_v2::model::Service;
use items_gateway_spec::Environment;

use super::cloud::{Cloud, Ui};
use super::journal::{Change, Journal, Rollback};
use super::migrate_job::MigrateJob;
use super::plan::{self, Plan, Step};
use super::probe::{self, Prober};
use super::revision;
use super::state::{self, short_name};
use super::traffic::{self, Split};

/// A failed step: which, where, and why (Google's error in the chain).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) step: String,
    pub(crate) region: String,
    pub(crate) error: anyhow::Error,
}

trait StepContext<T> {
    fn step(self, step: &str, region: &str) -> Result<T, Failure>;
}

impl<T> StepContext<T> for anyhow::Result<T> {
    fn step(self, step: &str, region: &str) -> Result<T, Failure> {
        self.map_err(|error| Failure {
            step: step.to_owned(),
            region: region.to_owned(),
            error,
        })
    }
}

pub(crate) struct Executor<'a> {
    plan: &'a Plan,
    env: &'a Environment,
    cloud: Cloud,
    ui: Ui,
    prober: Prober,
    /// Each region's service as last returned: its tagged URL, and the base (and etag) of the
    /// next patch.
    services: Vec<Service>,
    /// Each region's traffic as this deploy last set it (as read, before its first change).
    traffic: Vec<Vec<Split>>,
    /// Each region's gateway hostname as last returned.
    hostnames: Vec<String>,
    journal: Journal,
    /// The configs the gateways serve, read once before the first deletion.
    served: Option<Vec<String>>,
    /// Each region's new revision, once Cloud Run has named it.
    created: Vec<Option<String>>,
    migrate: Option<MigrateJob>,
}

impl<'a> Executor<'a> {
    pub(crate) fn new(
        plan: &'a Plan,
        env: &'a Environment,
        cloud: Cloud,
        ui: Ui,
        prober: Prober,
        journal: Journal,
    ) -> Self {
        Self {
            services: plan.regions.iter().map(|r| r.service.clone()).collect(),
            traffic: plan.regions.iter().map(|r| r.previous.clone()).collect(),
            hostnames: plan
                .regions
                .iter()
                .map(|r| r.gateway_hostname.clone())
                .collect(),
            plan,
            env,
            cloud,
            ui,
            prober,
            journal,
            served: None,
            created: vec![None; plan.regions.len()],
            migrate: None,
        }
    }

    /// The client of the migrate job step.
    pub(crate) fn with_migrate_job(mut self, migrate: MigrateJob) -> Self {
        self.migrate = Some(migrate);
        self
    }

    /// Each region's new revision (none where it was left alone or not reached).
    pub(crate) fn created(&self) -> &[Option<String>] {
        &self.created
    }

    /// Runs `steps` (of this executor's plan) in order, up to the first failure. Each step done
    /// is reported as `  done: <the plan's line for it>`.
    pub(crate) async fn run(&mut self, steps: &[Step]) -> Result<(), Failure> {
        for step in steps {
            if self.execute(step).await? {
                self.ui
                    .say(&format!("  done: {}", self.plan.describe(step)));
            }
        }
        Ok(())
    }

    /// Undoes what the journal holds; a summary for the error message.
    pub(crate) async fn roll_back(&mut self) -> Rollback {
        self.journal.roll_back(&self.cloud, self.ui).await
    }

    /// Ends the run: the lease is given up (with what a rollback could not undo as its journal).
    pub(crate) async fn close(self) {
        self.journal.close(self.ui).await;
    }

    /// Ends a run whose roll-out stands: nothing is left to undo, the lease is given up.
    pub(crate) async fn finish(mut self) {
        self.journal.clear();
        self.close().await;
    }

    /// Records `change` in the journal (persisted before the call it precedes is sent).
    async fn record(&mut self, change: Change) -> anyhow::Result<()> {
        let written = self.journal.record(change).await?;
        self.track_anchor(written);
        Ok(())
    }

    /// The journal's write changed the anchor service's etag: when it is one of the plan's
    /// services, its next patch starts from the service as written.
    fn track_anchor(&mut self, written: Option<Service>) {
        if let Some(written) = written
            && let Some(i) = self.services.iter().position(|s| s.name == written.name)
        {
            self.services[i] = written;
        }
    }

    /// Runs one step; `false` when it was left out because the world forbids it (a config to
    /// prune that a gateway serves by now).
    async fn execute(&mut self, step: &Step) -> Result<bool, Failure> {
        let plan = self.plan;
        match step {
            Step::RevisionServing { .. } | Step::GatewayServing { .. } => {}
            Step::Migrate { job } => {
                let image = plan.image.reference().unwrap_or_default();
                let result = match &self.migrate {
                    Some(m) => m.run(job, image).await.map(|_| ()),
                    None => Err(anyhow::anyhow!("no client for the migrate job")),
                };
                result.step("2 (migrations)", job.split('/').nth(3).unwrap_or(job))?;
            }
            Step::StageRevision { region, splits, .. } => {
                self.stage(*region, splits)
                    .await
                    .step("2 (create a revision)", self.name(*region))?;
            }
            Step::CheckRevision { region, canary } => self.check_revision(*region, *canary).await?,
            Step::Canary {
                region,
                percent,
                splits,
            } => {
                let step = format!("3 (canary {percent}% to {})", self.new_revision(*region));
                // The service as updated: its etag is the one the next patch must send.
                let updated = self
                    .shift(*region, splits)
                    .await
                    .step(&step, self.name(*region))?;
                self.services[*region] = updated;
            }
            Step::HoldCanary { seconds } => {
                // The lease outlives the hold.
                let written = self
                    .journal
                    .renew(Duration::from_secs(*seconds))
                    .await
                    .step("3 (hold the canary)", "global")?;
                self.track_anchor(written);
                self.ui
                    .say(&format!("step 3: holding the canary for {seconds} s"));
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
            }
            Step::FullTraffic { region, splits } => {
                let step = format!("3 (100% to {})", self.new_revision(*region));
                self.reread(*region).await.step(&step, self.name(*region))?;
                let updated = self
                    .shift(*region, splits)
                    .await
                    .step(&step, self.name(*region))?;
                self.services[*region] = updated;
            }
            Step::CreateApiConfig { region } => {
                let step = format!("4 (API config {})", plan.regions[*region].config_id);
                self.create_config(*region)
                    .await
                    .step(&step, self.name(*region))?;
            }
            Step::ReuseApiConfig { region } => {
                let step = format!("4 (API config {})", plan.regions[*region].config_id);
                self.reuse_config(*region)
                    .await
                    .step(&step, self.name(*region))?;
            }
            Step::PointGateway { region } => self.point_gateway(*region).await?,
            Step::CheckGateway { region } => self.check_gateway(*region).await?,
            Step::SloGate { region } => self.slo_gate(*region).await?,
            Step::DeleteApiConfig { name } => return self.delete_config(name).await,
        }
        Ok(true)
    }

    fn name(&self, region: usize) -> &str {
        &self.plan.regions[region].name
    }

    fn new_revision(&self, region: usize) -> &str {
        self.created[region]
            .as_deref()
            .unwrap_or(plan::NEW_REVISION)
    }

    /// `splits` with the region's new revision by the name Cloud Run gave it.
    fn resolved(&self, i: usize, splits: &[Split]) -> Vec<Split> {
        plan::resolve(splits, self.new_revision(i))
    }

    /// A new revision running the image (Cloud Run names it; the traffic stays as it is), then
    /// at 0% with the tag, reachable on its tagged URL.
    async fn stage(&mut self, i: usize, splits: &[Split]) -> anyhow::Result<()> {
        let plan = self.plan;
        let r = &plan.regions[i];
        let image = plan.image.reference().unwrap_or_default();
        let now = traffic::pinned(&self.services[i]);
        self.record(traffic_change(r, &now)).await?;
        let (created, name) = revision::create(
            &self.cloud,
            &self.services[i],
            image,
            &format!("{}: new revision of {image}", r.name),
        )
        .await?;
        self.applied(i, &created);
        self.services[i] = created;
        self.created[i] = Some(name);
        let splits = self.resolved(i, splits);
        self.record(traffic_change(r, &splits)).await?;
        let service = self.with_traffic(i, &splits);
        let updated = self
            .cloud
            .update_service(
                service,
                &format!("{}: {}", r.name, traffic::describe(&splits)),
            )
            .await?;
        self.applied(i, &updated);
        tagged_url(&updated, &self.plan.tag)
            .with_context(|| format!("the service reports no URL for tag {}", self.plan.tag))?;
        self.services[i] = updated;
        Ok(())
    }

    /// Patches the region's traffic to `splits`; the service as updated.
    async fn shift(&mut self, i: usize, splits: &[Split]) -> anyhow::Result<Service> {
        let plan = self.plan;
        let r = &plan.regions[i];
        let splits = self.resolved(i, splits);
        self.record(traffic_change(r, &splits)).await?;
        let service = self.with_traffic(i, &splits);
        let updated = self
            .cloud
            .update_service(
                service,
                &format!("{}: {}", r.name, traffic::describe(&splits)),
            )
            .await?;
        self.applied(i, &updated);
        Ok(updated)
    }

    /// The traffic a patch left, as Cloud Run reports it: what the full-traffic step and the
    /// rollback compare with (and, in the journal, a state this deploy set).
    fn applied(&mut self, i: usize, updated: &Service) {
        let now = traffic::pinned(updated);
        self.journal
            .observe(traffic_change(&self.plan.regions[i], &now));
        self.traffic[i] = now;
    }

    /// Reads the region's service again. Another etag with the traffic this deploy set (a
    /// Terraform apply during the hold) becomes the base of the next patch, which keeps what the
    /// other writer changed; changed traffic is someone else's roll-out or rollback: an error.
    async fn reread(&mut self, i: usize) -> anyhow::Result<()> {
        let plan = self.plan;
        let name = &plan.regions[i].service_name;
        let current = self.cloud.get_service(name).await?;
        let known = &self.services[i].etag;
        if current.etag == *known {
            return Ok(());
        }
        let now = traffic::pinned(&current);
        if !traffic::same(&now, &self.traffic[i]) {
            bail!(
                "{name} changed since this deploy set its traffic (etag {known}, now {}): it serves {}, not {}; not overwriting it",
                current.etag,
                traffic::describe(&now),
                traffic::describe(&self.traffic[i])
            );
        }
        self.ui.say(&format!(
            "  {}: {} changed since the canary (etag {known} → {}), its traffic did not; keeping that change",
            self.name(i),
            short_name(name),
            current.etag
        ));
        self.services[i] = current;
        Ok(())
    }

    async fn check_revision(&self, i: usize, canary: bool) -> Result<(), Failure> {
        let name = self.name(i);
        let service = &self.services[i];
        let url = tagged_url(service, &self.plan.tag)
            .with_context(|| format!("the service reports no URL for tag {}", self.plan.tag))
            .step(
                &format!("{} (check the tagged URL)", if canary { 3 } else { 2 }),
                name,
            )?;
        let step = if canary {
            format!("3 (check the canary on {url})")
        } else {
            format!("2 (check the tagged URL {url})")
        };
        self.prober
            .check_revision(&url, &service.uri)
            .await
            .step(&step, name)?;
        self.ui.say(&format!(
            "  ✓ {name}: {url}/health/ready and {url}{} answer",
            probe::READ_PATH
        ));
        Ok(())
    }

    /// The region's service as last seen, with `splits` as its traffic.
    fn with_traffic(&self, i: usize, splits: &[Split]) -> Service {
        let mut service = self.services[i].clone();
        service.traffic = splits.iter().map(Split::to_target).collect();
        service
    }

    async fn create_config(&self, i: usize) -> anyhow::Result<()> {
        let r = &self.plan.regions[i];
        self.cloud
            .create_config(
                &self.plan.api,
                &r.config_id,
                &r.config_file,
                &r.yaml,
                &self.env.gateway_service_account,
            )
            .await?;
        Ok(())
    }

    /// The plan found the config; it must still be there and ACTIVE.
    async fn reuse_config(&self, i: usize) -> anyhow::Result<()> {
        let r = &self.plan.regions[i];
        let Some(existing) = self.cloud.get_config(&r.config_name).await? else {
            bail!("API config {} no longer exists", r.config_id);
        };
        if existing.state != api_config::State::Active {
            bail!(
                "API config {} exists in state {:?}, not ACTIVE",
                r.config_id,
                existing.state
            );
        }
        Ok(())
    }

    async fn point_gateway(&mut self, i: usize) -> Result<(), Failure> {
        let plan = self.plan;
        let r = &plan.regions[i];
        let gateway = short_name(&r.gateway_name);
        let step = format!("4 (point gateway {gateway} at {})", r.config_id);
        // No etag on a gateway: what it serves is checked against what the plan read.
        let serving = self
            .cloud
            .get_gateway(&r.gateway_name)
            .await
            .step(&step, &r.name)?
            .api_config;
        if serving != r.gateway_config {
            return Err(Failure {
                step,
                region: r.name.clone(),
                error: anyhow::anyhow!(
                    "gateway {gateway} serves {} since the plan read {}: someone else changed it; not overwriting it",
                    short_name(&serving),
                    short_name(&r.gateway_config)
                ),
            });
        }
        self.record(Change::Gateway {
            region: r.name.clone(),
            gateway: r.gateway_name.clone(),
            restore: r.gateway_config.clone(),
            set: r.config_name.clone(),
        })
        .await
        .step(&step, &r.name)?;
        let updated = self
            .cloud
            .set_gateway_config(
                &r.gateway_name,
                &r.config_name,
                &format!("{}: gateway {gateway} → {}", r.name, r.config_id),
            )
            .await
            .step(&step, &r.name)?;
        if !updated.default_hostname.is_empty() {
            self.hostnames[i] = updated.default_hostname;
        }
        Ok(())
    }

    async fn check_gateway(&self, i: usize) -> Result<(), Failure> {
        let (name, hostname) = (self.name(i), &self.hostnames[i]);
        let seen = self
            .prober
            .check_gateway(hostname)
            .await
            .step(&format!("4 (check the gateway {hostname})"), name)?;
        self.ui.say(&format!("  ✓ {name}: {seen}"));
        Ok(())
    }

    async fn slo_gate(&self, i: usize) -> Result<(), Failure> {
        let name = self.name(i);
        let gate = self
            .plan
            .gate
            .as_ref()
            .context("the plan has an SLO gate but no objectives")
            .step("4 (SLO gate)", name)?;
        let base = probe::gateway_base(&self.hostnames[i]);
        let met = gate.check(&base).await.step("4 (SLO gate)", name)?;
        self.ui.say(&format!("  ✓ {name}: {met}"));
        Ok(())
    }

    /// Deletes a config the plan prunes, unless a gateway serves it by now.
    async fn delete_config(&mut self, name: &str) -> Result<bool, Failure> {
        let step = "prune API configs";
        if self.served.is_none() {
            let served = state::served_configs(&self.cloud, self.env, &[])
                .await
                .step(step, "global")?;
            self.served = Some(served);
        }
        if self
            .served
            .as_ref()
            .is_some_and(|s| s.iter().any(|c| c == name))
        {
            self.ui
                .say(&format!("step 6: kept {name}: a gateway serves it now"));
            return Ok(false);
        }
        self.cloud.delete_config(name).await.step(step, "global")?;
        Ok(true)
    }
}

/// The journal entry for a region's traffic: as it was before the roll-out, and `splits`, about
/// to be set.
fn traffic_change(r: &state::Region, splits: &[Split]) -> Change {
    Change::Traffic {
        region: r.name.clone(),
        service: r.service_name.clone(),
        restore: r.previous.clone(),
        set: vec![splits.to_vec()],
    }
}

/// The URL Cloud Run gives the revision tagged `tag`.
fn tagged_url(service: &Service, tag: &str) -> Option<String> {
    service
        .traffic_statuses
        .iter()
        .find(|s| s.tag == tag && !s.uri.is_empty())
        .map(|s| s.uri.clone())
}
