//! The roll-out as a list of typed steps, computed once from the state read and the inputs:
//! `--plan` prints it and the executor (`execute.rs`) runs it, so neither can decide anything
//! the other does not.
//!
//! A region gets a new revision unless the revision serving all its traffic runs the image with
//! the service's current configuration (`configuration.rs`); the plan says why it rolls. Cloud
//! Run names the revision when it creates it, so until then the steps call it
//! [`NEW_REVISION`] and the executor puts in the name the service reports.

use std::fmt::Write as _;

use items_gateway_spec::Environment;

use super::migrate_job;
use super::probe;
use super::slo::Gate;
use super::state::{self, Region, State};
use super::traffic::{self, Split};

pub(crate) mod configuration;

/// What the steps call a region's new revision until Cloud Run has named it.
pub(crate) const NEW_REVISION: &str = "<new revision>";

/// `splits` with [`NEW_REVISION`] replaced by `created`, the name Cloud Run gave it.
pub(crate) fn resolve(splits: &[Split], created: &str) -> Vec<Split> {
    splits
        .iter()
        .map(|s| Split {
            revision: if s.revision == NEW_REVISION {
                created.to_owned()
            } else {
                s.revision.clone()
            },
            ..s.clone()
        })
        .collect()
}

/// The image the roll-out deploys.
#[derive(Debug, Clone)]
pub(crate) enum Image {
    /// `--image`, pinned by digest.
    Given(String),
    /// Built and pushed by this run (step 1), by digest.
    Built(String),
    /// `--plan` without `--image`: it would be built and pushed here (a tag; the digest is not
    /// known yet).
    ToBuild(String),
}

impl Image {
    /// The reference by digest, once there is one.
    pub(crate) fn reference(&self) -> Option<&str> {
        match self {
            Self::Given(r) | Self::Built(r) => Some(r),
            Self::ToBuild(_) => None,
        }
    }

    /// The first 12 hex digits of the digest, which name the new revision's tag.
    fn digest_prefix(&self) -> Option<&str> {
        let (_, hex) = self.reference()?.rsplit_once("sha256:")?;
        Some(hex.get(..12).unwrap_or(hex))
    }
}

/// What the plan is computed from besides the state.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) image: Image,
    pub(crate) canary: Option<i32>,
    pub(crate) canary_wait: u64,
    pub(crate) keep_api_configs: usize,
    pub(crate) gate: Option<Gate>,
}

/// One step of the roll-out. `region` indexes [`Plan::regions`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// 2, before any revision is created: point the migrate job at the image, run it and wait for
    /// its execution; a failure stops the deploy before any service is touched.
    Migrate { job: String },
    /// 2: the revision serving all traffic runs the image with the service's configuration; the
    /// service is left alone.
    RevisionServing { region: usize },
    /// 2: a new revision from the service's template and the image, at 0% with the deploy tag.
    StageRevision {
        region: usize,
        /// Why the region rolls (another image, a configuration change, split traffic …).
        why: String,
        splits: Vec<Split>,
    },
    /// 2, and 3 after the canary hold: `/health/ready` and one API read on the tagged URL.
    CheckRevision { region: usize, canary: bool },
    /// 3: `--canary` percent to the new revision.
    Canary {
        region: usize,
        percent: i32,
        splits: Vec<Split>,
    },
    /// 3: wait before the canaries are checked again.
    HoldCanary { seconds: u64 },
    /// 3: all traffic to the new revision.
    FullTraffic { region: usize, splits: Vec<Split> },
    /// 4: the region's gateway serves the rendered config already.
    GatewayServing { region: usize },
    /// 4: create the rendered config and wait until it is ACTIVE.
    CreateApiConfig { region: usize },
    /// 4: a config with the rendered id (a content hash) exists; use it.
    ReuseApiConfig { region: usize },
    /// 4: point the region's gateway at the rendered config.
    PointGateway { region: usize },
    /// 4: one request through the region's gateway.
    CheckGateway { region: usize },
    /// 4: `--slo-p95-ms`: load the region's gateway and compare with the objectives.
    SloGate { region: usize },
    /// 6: delete a config beyond `keep_api_configs` that no gateway serves.
    DeleteApiConfig { name: String },
}

impl Step {
    /// The numbered phase of the roll-out the step belongs to (docs/deploy.md, "What it does").
    pub(crate) fn phase(&self) -> u8 {
        match self {
            Self::Migrate { .. }
            | Self::RevisionServing { .. }
            | Self::StageRevision { .. }
            | Self::CheckRevision { canary: false, .. } => 2,
            Self::CheckRevision { canary: true, .. }
            | Self::Canary { .. }
            | Self::HoldCanary { .. }
            | Self::FullTraffic { .. } => 3,
            Self::GatewayServing { .. }
            | Self::CreateApiConfig { .. }
            | Self::ReuseApiConfig { .. }
            | Self::PointGateway { .. }
            | Self::CheckGateway { .. }
            | Self::SloGate { .. } => 4,
            Self::DeleteApiConfig { .. } => 6,
        }
    }

    /// Whether the step is one of "leave this region as it is".
    fn unchanged(&self) -> bool {
        matches!(
            self,
            Self::RevisionServing { .. } | Self::GatewayServing { .. }
        )
    }
}

/// The roll-out: the state it starts from, the names it uses and its steps in order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) env_name: String,
    pub(crate) project: String,
    pub(crate) api: String,
    pub(crate) image: Image,
    pub(crate) tag: String,
    pub(crate) keep_api_configs: usize,
    pub(crate) gate: Option<Gate>,
    pub(crate) regions: Vec<Region>,
    pub(crate) steps: Vec<Step>,
}

impl Plan {
    pub(crate) fn new(env: &Environment, state: State, inputs: Inputs) -> Self {
        let tag = format!(
            "deploy-{}",
            inputs.image.digest_prefix().unwrap_or("<digest prefix>")
        );
        let why: Vec<Option<String>> = state
            .regions
            .iter()
            .map(|r| configuration::why_roll(r, inputs.image.reference()))
            .collect();
        let staged: Vec<bool> = why.iter().map(Option::is_some).collect();
        let mut steps = Vec::new();
        // The schema first: a new revision may need it, and the revisions serving now must keep
        // working on it (expand/contract, docs/deploy.md).
        if staged.contains(&true) {
            steps.push(Step::Migrate {
                job: migrate_job::job_name(env),
            });
        }
        steps.extend(revision_steps(&state.regions, &why, &tag));
        steps.extend(traffic_steps(&state.regions, &staged, &inputs, &tag));
        steps.extend(gateway_steps(
            &state.regions,
            &staged,
            inputs.gate.is_some(),
        ));
        steps.extend(
            prune_steps(&state, inputs.keep_api_configs)
                .into_iter()
                .map(|name| Step::DeleteApiConfig { name }),
        );
        Self {
            env_name: env.name.clone(),
            project: env.project_id.clone(),
            api: state::api_name(env),
            image: inputs.image,
            tag,
            keep_api_configs: inputs.keep_api_configs,
            gate: inputs.gate,
            regions: state.regions,
            steps,
        }
    }

    /// What a run that changes nothing (pruning aside) says: per region, the revision that
    /// serves the image with the service's configuration, and the API config.
    pub(crate) fn nothing_to_do(&self) -> String {
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|r| {
                format!(
                    "{} serves revision {} and API config {}",
                    r.name,
                    traffic::serving_all(&r.previous).unwrap_or_default(),
                    r.config_id
                )
            })
            .collect();
        format!(
            "Nothing to do in {}: the image and configuration are live ({}).",
            self.env_name,
            regions.join("; ")
        )
    }

    /// What a finished roll-out says; `created` is each region's new revision (none where the
    /// region was left alone).
    pub(crate) fn deployed(&self, created: &[Option<String>]) -> String {
        let regions: Vec<String> = self
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let revision = created.get(i).cloned().flatten().unwrap_or_else(|| {
                    traffic::serving_all(&r.previous)
                        .unwrap_or_default()
                        .to_owned()
                });
                format!(
                    "{} (revision {revision}, API config {})",
                    r.name, r.config_id
                )
            })
            .collect();
        format!(
            "Deployed {} in {}.",
            self.image.reference().unwrap_or_default(),
            regions.join(", ")
        )
    }

    /// Whether any service or gateway changes (pruning aside).
    pub(crate) fn changes_anything(&self) -> bool {
        self.steps.iter().any(|s| s.phase() < 6 && !s.unchanged())
    }

    /// The roll-out's steps (phases 2–4) and, apart, the pruning's (phase 6), which follow it.
    pub(crate) fn roll_out_and_prune(&self) -> (&[Step], &[Step]) {
        let split = self
            .steps
            .iter()
            .position(|s| s.phase() == 6)
            .unwrap_or(self.steps.len());
        self.steps.split_at(split)
    }

    /// One line saying what `step` does, with every resource name: the `--plan` output and the
    /// executor's record of what it ran.
    pub(crate) fn describe(&self, step: &Step) -> String {
        let r = |i: &usize| &self.regions[*i];
        match step {
            Step::Migrate { job } => format!(
                "migrations: point job {job} at the image, run it and wait for its execution; \
                 if it fails, stop here"
            ),
            Step::RevisionServing { region } => format!(
                "{}: {} already serves 100% with this image and configuration: unchanged",
                r(region).name,
                traffic::serving_all(&r(region).previous).unwrap_or_default()
            ),
            Step::StageRevision {
                region,
                why,
                splits,
            } => {
                let r = r(region);
                format!(
                    "{}: create a revision on {} ({why}; serving now: {}) → {}",
                    r.name,
                    r.service_name,
                    traffic::describe(&r.previous),
                    traffic::describe(splits)
                )
            }
            Step::CheckRevision { region, canary } => format!(
                "{}: check {}its tagged URL /health/ready and {}",
                r(region).name,
                if *canary { "the canary on " } else { "" },
                probe::READ_PATH
            ),
            Step::Canary { region, splits, .. } | Step::FullTraffic { region, splits } => {
                format!(
                    "{}: traffic on {} → {}",
                    r(region).name,
                    r(region).service_name,
                    traffic::describe(splits)
                )
            }
            Step::HoldCanary { seconds } => format!("hold the canary {seconds} s"),
            Step::DeleteApiConfig { name } => format!("delete {name}"),
            Step::GatewayServing { region }
            | Step::CreateApiConfig { region }
            | Step::ReuseApiConfig { region }
            | Step::PointGateway { region }
            | Step::CheckGateway { region }
            | Step::SloGate { region } => self.describe_gateway_step(&self.regions[*region], step),
        }
    }

    /// [`Self::describe`] for the steps of phase 4.
    fn describe_gateway_step(&self, r: &Region, step: &Step) -> String {
        let what = match step {
            Step::GatewayServing { .. } => format!(
                "gateway {} already serves {}: unchanged",
                r.gateway_name, r.config_id
            ),
            Step::CreateApiConfig { .. } => format!("create config {}", r.config_name),
            Step::ReuseApiConfig { .. } => format!("config {} exists; reusing it", r.config_name),
            Step::PointGateway { .. } => format!(
                "point {} at {} (now {})",
                r.gateway_name,
                r.config_id,
                if r.gateway_config.is_empty() {
                    "none"
                } else {
                    state::short_name(&r.gateway_config)
                }
            ),
            Step::CheckGateway { .. } => format!(
                "check a request through {}",
                probe::gateway_base(&r.gateway_hostname)
            ),
            // The SLO gate.
            _ => format!(
                "then {}",
                self.gate.as_ref().map(Gate::describe).unwrap_or_default()
            ),
        };
        format!("{}: {what}", r.name)
    }

    /// What `--plan` prints: the steps under the headings of their phases.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "Plan for {} (project {}), {} region(s). Nothing is changed.\n",
            self.env_name,
            self.project,
            self.regions.len()
        );
        let image = match &self.image {
            Image::Given(r) => format!("{r} (given, not built)"),
            Image::Built(r) => format!("{r} (built and pushed)"),
            Image::ToBuild(to) => {
                format!("build the release binary and the OCI image, push {to}")
            }
        };
        let _ = writeln!(out, " 1. image: {image}");
        let migrate = self.steps.iter().any(|s| matches!(s, Step::Migrate { .. }));
        let headings = [
            (
                2,
                format!(
                    "{}revisions (0% traffic, tag {})",
                    if migrate { "migrations, then " } else { "" },
                    self.tag
                ),
            ),
            (3, "traffic".to_owned()),
            (4, format!("API Gateway (API {})", self.api)),
        ];
        for (phase, heading) in headings {
            self.render_phase(&mut out, phase, &heading);
        }
        out.push_str(
            " 5. on failure: restore the previous traffic and API config in every region already changed, newest first\n",
        );
        let keep = self.keep_api_configs;
        let heading = format!("prune: keep the {keep} newest configs and those gateways serve");
        if self.steps.iter().any(|s| s.phase() == 6) {
            self.render_phase(&mut out, 6, &format!("{heading}; after the roll-out"));
        } else {
            let _ = writeln!(out, " 6. {heading}: nothing to delete");
        }
        out
    }

    fn render_phase(&self, out: &mut String, phase: u8, heading: &str) {
        let lines: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.phase() == phase)
            .map(|s| self.describe(s))
            .collect();
        if lines.is_empty() {
            let _ = writeln!(out, " {phase}. {heading}: nothing to change");
            return;
        }
        let _ = writeln!(out, " {phase}. {heading}:");
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// Phase 2: in each region that rolls (`why`), a new revision at 0% with the tag, then its
/// check.
fn revision_steps(regions: &[Region], why: &[Option<String>], tag: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let Some(why) = &why[i] else {
            steps.push(Step::RevisionServing { region: i });
            continue;
        };
        steps.push(Step::StageRevision {
            region: i,
            why: why.clone(),
            splits: traffic::staged(&untagged(&r.previous, tag), NEW_REVISION, tag),
        });
        steps.push(Step::CheckRevision {
            region: i,
            canary: false,
        });
    }
    steps
}

/// Phase 3: with `--canary`, the canary in every staged region, the hold and the checks; then all
/// traffic in every staged region.
fn traffic_steps(regions: &[Region], staged: &[bool], inputs: &Inputs, tag: &str) -> Vec<Step> {
    let moving: Vec<usize> = (0..regions.len()).filter(|i| staged[*i]).collect();
    let mut steps = Vec::new();
    if let Some(percent) = inputs.canary
        && !moving.is_empty()
    {
        for &i in &moving {
            steps.push(Step::Canary {
                region: i,
                percent,
                splits: traffic::canary(
                    &untagged(&regions[i].previous, tag),
                    NEW_REVISION,
                    tag,
                    percent,
                ),
            });
        }
        if inputs.canary_wait > 0 {
            steps.push(Step::HoldCanary {
                seconds: inputs.canary_wait,
            });
        }
        for &i in &moving {
            steps.push(Step::CheckRevision {
                region: i,
                canary: true,
            });
        }
    }
    for &i in &moving {
        steps.push(Step::FullTraffic {
            region: i,
            splits: traffic::full(NEW_REVISION, tag),
        });
    }
    steps
}

/// `previous` without `tag`: a re-deploy of the same image (a configuration change) moves the
/// tag from the revision serving now to the new one; a tag names one revision.
fn untagged(previous: &[Split], tag: &str) -> Vec<Split> {
    previous
        .iter()
        .map(|s| Split {
            tag: if s.tag == tag {
                String::new()
            } else {
                s.tag.clone()
            },
            ..s.clone()
        })
        .filter(|s| s.percent > 0 || !s.tag.is_empty())
        .collect()
}

/// Phase 4, one region after the other: the config (created one at a time), the gateway, its
/// check and the SLO gate.
fn gateway_steps(regions: &[Region], staged: &[bool], gate: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut created: Vec<&str> = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        if r.gateway_current() {
            steps.push(Step::GatewayServing { region: i });
            // The gateway's config is unchanged, but a new revision took its traffic: the gate
            // measures it through the gateway all the same.
            if gate && staged[i] {
                steps.push(Step::SloGate { region: i });
            }
            continue;
        }
        // Two regions rendering the same config (ids are content hashes) create it once.
        if r.config_exists || created.contains(&r.config_name.as_str()) {
            steps.push(Step::ReuseApiConfig { region: i });
        } else {
            created.push(&r.config_name);
            steps.push(Step::CreateApiConfig { region: i });
        }
        steps.push(Step::PointGateway { region: i });
        steps.push(Step::CheckGateway { region: i });
        if gate {
            steps.push(Step::SloGate { region: i });
        }
    }
    steps
}

/// Phase 6: the configs to delete once the roll-out is done, when the configs it creates are the
/// newest and the deployed regions' gateways serve their rendered configs.
fn prune_steps(state: &State, keep: usize) -> Vec<String> {
    let mut names = state.configs.clone();
    for r in state.regions.iter().rev() {
        if !names.contains(&r.config_name) {
            names.insert(0, r.config_name.clone());
        }
    }
    let mut in_use: Vec<String> = state
        .regions
        .iter()
        .map(|r| r.config_name.clone())
        .collect();
    in_use.extend(state.served_elsewhere.iter().cloned());
    prune_selection(&names, keep, &in_use)
}

/// `names` (newest first) beyond the `keep` newest, except those in use.
fn prune_selection(names: &[String], keep: usize, in_use: &[String]) -> Vec<String> {
    names
        .iter()
        .skip(keep)
        .filter(|name| !in_use.contains(name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
