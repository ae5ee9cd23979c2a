//! `cargo xtask deploy --env <env>`: one trustworthy roll-out of the service to Cloud Run and
//! API Gateway in every region of an environment.
//!
//! 1. build and push the image (unless `--image <ref@digest>` is given);
//! 2. in each region, create revision `<service>-<digest prefix>` at 0% traffic with tag
//!    `deploy-<digest prefix>`, wait, and check its tagged URL (`/health/ready`, one API read);
//! 3. move traffic: `--canary <percent>` first (held `--canary-wait` seconds and re-checked),
//!    then 100%;
//! 4. render each region's API Gateway config (crate `items-gateway-spec`), create it when its
//!    id does not exist yet (one at a time, until ACTIVE), point the region's gateway at it,
//!    wait, and check one request through the gateway; with `--slo-p95-ms`, load it briefly and
//!    treat a missed objective as a failure of that region (`slo.rs`);
//! 5. on any failure, restore the previous traffic and API config in every region already
//!    changed (newest change first) and exit non-zero naming the step, region and Google's error;
//! 6. prune the API's configs beyond `keep_api_configs`, never one a gateway serves.
//!
//! `--plan` reads the current state and prints the steps with every resource name, changing
//! nothing. A re-run with the same image and spec finds nothing to do and says so.

mod cloud;
mod probe;
mod slo;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use google_cloud_run_v2::model::Service;
use items_gateway_spec::Environment;

use self::cloud::{Cloud, Connection, Ui};
use self::probe::Prober;
use self::traffic::Split;
use crate::util;

/// How long the credential check waits for a token (the metadata server included).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The environment: a file stem of deploy/environments (dev, stage, prod).
    #[arg(long)]
    env: String,
    /// Print the ordered steps with every resource name; change nothing.
    #[arg(long)]
    plan: bool,
    /// Deploy this already pushed image (<registry>/<repository>@sha256:<digest>) instead of
    /// building and pushing one.
    #[arg(long, value_name = "REF@DIGEST")]
    image: Option<String>,
    /// Send this percentage of traffic to the new revision first, then 100%.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(i32).range(1..=99))]
    canary: Option<i32>,
    /// Seconds to hold the canary before the tagged URL is checked again and traffic moves to 100%.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    canary_wait: u64,
    /// Only these regions of the environment (repeatable); all when omitted.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Image repository to push to (default
    /// <first region>-docker.pkg.dev/<project>/items/items-service, as deploy/terraform creates).
    #[arg(long, value_name = "REGISTRY/REPOSITORY")]
    repository: Option<String>,
    /// API key for the request through the gateway (without one, a 401/403 from the gateway
    /// counts as serving).
    #[arg(long, env = "DEPLOY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// API configs to keep when pruning (default: keep_api_configs of the environment file).
    #[arg(long, value_name = "N")]
    keep_api_configs: Option<usize>,
    #[command(flatten)]
    slo: slo::SloArgs,

    // For tests against a local fake control plane.
    /// Directory of the environment files.
    #[arg(long, hide = true, default_value = "deploy/environments")]
    environments: PathBuf,
    #[arg(long, hide = true, env = "XTASK_RUN_ENDPOINT")]
    run_endpoint: Option<String>,
    #[arg(long, hide = true, env = "XTASK_APIGATEWAY_ENDPOINT")]
    apigateway_endpoint: Option<String>,
    /// Anonymous credentials for the clients and no ID tokens for the checks.
    #[arg(long, hide = true)]
    anonymous: bool,
    /// First pause between polls of an operation, in milliseconds.
    #[arg(long, hide = true)]
    poll_interval_ms: Option<u64>,
}

/// The state of one region before the roll-out, and what it becomes.
#[derive(Debug)]
struct Region {
    name: String,
    service_name: String,
    service: Service,
    previous: Vec<Split>,
    revision_exists: bool,
    gateway_name: String,
    gateway_config: String,
    gateway_hostname: String,
    config_id: String,
    config_name: String,
    config_file: String,
    yaml: String,
}

impl Region {
    fn service_current(&self, revision: &str) -> bool {
        traffic::serving_all(&self.previous) == Some(revision)
    }

    fn gateway_current(&self) -> bool {
        self.gateway_config == self.config_name
    }
}

/// What the roll-out changed, to undo on failure.
#[derive(Debug)]
enum Change {
    Traffic { region: usize, restore: Vec<Split> },
    Gateway { region: usize, restore: String },
}

/// A failed step: which, where, and why (Google's error in the chain).
#[derive(Debug)]
struct Failure {
    step: String,
    region: String,
    error: anyhow::Error,
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

struct Deployment<'a> {
    env: &'a Environment,
    cloud: Cloud,
    ui: Ui,
    prober: Prober,
    gate: Option<slo::Gate>,
    image: String,
    revision: String,
    tag: String,
    regions: Vec<Region>,
    changes: Vec<Change>,
    args: &'a Args,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env = load_environment(&args)?;
    if !args.anonymous
        && let Err(missing) = cloud::check_credentials(CREDENTIALS_TIMEOUT).await
    {
        eprintln!("error: {missing}.\n{}", cloud::NO_CREDENTIALS_FIX);
        return Ok(ExitCode::from(2));
    }
    let ui = Ui::new();
    let conn = Connection {
        run_endpoint: args.run_endpoint.clone(),
        apigateway_endpoint: args.apigateway_endpoint.clone(),
        anonymous: args.anonymous,
        poll_interval: args.poll_interval_ms.map(Duration::from_millis),
    };
    let region_names = selected_regions(&env, &args.regions)?;
    let repository = args.repository.clone().unwrap_or_else(|| {
        format!(
            "{}-docker.pkg.dev/{}/items/{}",
            env.regions
                .first()
                .map_or("europe-west1", |r| r.name.as_str()),
            env.project_id,
            util::SERVICE
        )
    });

    // Step 1: the image.
    let image = match (&args.image, args.plan) {
        (Some(image), _) => {
            check_pinned(image)?;
            image.clone()
        }
        (None, true) => String::new(),
        (None, false) => {
            let tag = image_tag().await;
            ui.say(&format!("step 1: building and pushing {repository}:{tag}"));
            let built =
                crate::image::build(&crate::image::Args::for_push(format!("{repository}:{tag}")))
                    .await
                    .context("step 1 (build and push the image) failed")?;
            built
                .pushed
                .context("step 1 (build and push the image): nothing was pushed")?
        }
    };

    let cloud = Cloud::connect(&conn, ui).await?;
    let prober = Prober::new(args.anonymous, args.api_key.clone(), args.anonymous)?
        .with_token(args.slo.token.clone());
    let short = image
        .rsplit_once("sha256:")
        .map_or("", |(_, hex)| hex.get(..12).unwrap_or(hex))
        .to_owned();
    let revision = format!("{}-{short}", env.service);
    let tag = format!("deploy-{short}");

    let mut regions = Vec::new();
    for name in &region_names {
        regions.push(
            read_region(&cloud, &env, name, &revision)
                .await
                .with_context(|| format!("reading the current state of {name}"))?,
        );
    }

    let mut deployment = Deployment {
        env: &env,
        cloud,
        ui,
        prober,
        gate: args.slo.gate(args.api_key.clone()),
        image,
        revision,
        tag,
        regions,
        changes: Vec::new(),
        args: &args,
    };

    if args.plan {
        deployment.print_plan(&repository).await?;
        return Ok(ExitCode::SUCCESS);
    }

    let up_to_date = deployment
        .regions
        .iter()
        .all(|r| r.service_current(&deployment.revision) && r.gateway_current());
    if up_to_date {
        println!(
            "Nothing to do: {} already serve{} revision {} and their API configs ({}) in {}.",
            if deployment.regions.len() == 1 {
                "the region"
            } else {
                "all regions"
            },
            if deployment.regions.len() == 1 {
                "s"
            } else {
                ""
            },
            deployment.revision,
            deployment
                .regions
                .iter()
                .map(|r| r.config_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            env.name,
        );
        deployment
            .prune()
            .await
            .map_err(|f| f.error.context(format!("step 6 ({}) failed", f.step)))?;
        return Ok(ExitCode::SUCCESS);
    }

    match deployment.roll_out().await {
        Ok(()) => {
            if let Err(f) = deployment.prune().await {
                // The roll-out stands; pruning again next time is harmless.
                eprintln!(
                    "warning: step 6 ({}) failed: {:#}; the new version is live",
                    f.step, f.error
                );
            }
            println!(
                "Deployed {} as revision {} in {}.",
                deployment.image,
                deployment.revision,
                deployment
                    .regions
                    .iter()
                    .map(|r| format!("{} (API config {})", r.name, r.config_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!(
                "error: step {} failed in {}: {:#}",
                failure.step, failure.region, failure.error
            );
            let restored = deployment.roll_back().await;
            bail!(
                "deploy failed at step {} in {}: {:#}\n{restored}",
                failure.step,
                failure.region,
                failure.error
            )
        }
    }
}

/// The environment file, parsed by `items-gateway-spec` (the same parser `cargo xtask render`
/// uses).
fn load_environment(args: &Args) -> anyhow::Result<Environment> {
    let dir = if args.environments.is_absolute() {
        args.environments.clone()
    } else {
        util::project_root().join(&args.environments)
    };
    let path = dir.join(format!("{}.toml", args.env));
    if !path.is_file() {
        bail!(
            "there is no environment {:?} ({} does not exist)",
            args.env,
            path.display()
        );
    }
    Ok(Environment::load(&path)?)
}

/// The region's API Gateway config, rendered by `items-gateway-spec` from the route table.
fn render_config(env: &Environment, region: &str) -> anyhow::Result<items_gateway_spec::Rendered> {
    let spec: serde_json::Value = serde_json::from_str(items_http::openapi_json())
        .context("the generated OpenAPI spec is not JSON")?;
    let previous = std::fs::read_to_string(
        util::project_root()
            .join("openapi/gateway")
            .join(format!("{}-{region}.yaml", env.name)),
    )
    .ok();
    Ok(items_gateway_spec::render(
        &spec,
        env,
        region,
        previous.as_deref(),
    )?)
}

fn selected_regions(env: &Environment, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let known: Vec<String> = env.regions.iter().map(|r| r.name.clone()).collect();
    if wanted.is_empty() {
        return Ok(known);
    }
    for w in wanted {
        if !known.contains(w) {
            bail!(
                "{} has no region {w:?} (regions: {})",
                env.name,
                known.join(", ")
            );
        }
    }
    Ok(known.into_iter().filter(|k| wanted.contains(k)).collect())
}

/// Cloud Run deploys what a tag points to when it resolves it; pinning by digest makes the
/// revision name (and a re-run) mean exactly one image.
fn check_pinned(image: &str) -> anyhow::Result<()> {
    let Some((_, hex)) = image.rsplit_once("@sha256:") else {
        bail!("--image {image:?}: give the image by digest, <registry>/<repository>@sha256:<hex>");
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        bail!("--image {image:?}: the digest must be 64 lowercase hex digits");
    }
    Ok(())
}

/// The tag pushed images get: the commit, for people browsing the registry.
async fn image_tag() -> String {
    let rev = tokio::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(util::project_root())
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    rev.map_or_else(|| "latest".to_owned(), |r| format!("git-{r}"))
}

async fn read_region(
    cloud: &Cloud,
    env: &Environment,
    name: &str,
    revision: &str,
) -> anyhow::Result<Region> {
    let settings = env
        .region(name)
        .with_context(|| format!("{} has no region {name}", env.name))?;
    let service_name = format!(
        "projects/{}/locations/{name}/services/{}",
        env.project_id, env.service
    );
    let service = cloud.get_service(&service_name).await?;
    let revision_exists = cloud
        .revision_exists(&format!("{service_name}/revisions/{revision}"))
        .await?;
    let gateway_name = format!(
        "projects/{}/locations/{name}/gateways/{}",
        env.project_id, settings.gateway_id
    );
    let gateway = cloud.get_gateway(&gateway_name).await?;
    let rendered = render_config(env, name)?;
    let config_name = format!(
        "projects/{}/locations/global/apis/{}/configs/{}",
        env.project_id, env.api_id, rendered.config_id
    );
    Ok(Region {
        name: name.to_owned(),
        previous: traffic::pinned(&service),
        service_name,
        service,
        revision_exists,
        gateway_name,
        gateway_config: gateway.api_config,
        gateway_hostname: gateway.default_hostname,
        config_id: rendered.config_id,
        config_name,
        config_file: rendered.file_name,
        yaml: rendered.yaml,
    })
}

fn api_name(env: &Environment) -> String {
    format!(
        "projects/{}/locations/global/apis/{}",
        env.project_id, env.api_id
    )
}

fn short_config(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Deployment<'_> {
    async fn roll_out(&mut self) -> Result<(), Failure> {
        let total = self.regions.len();
        // Step 2: a tagged revision without traffic in every region, checked on its URL.
        for i in 0..total {
            let region = &self.regions[i];
            let name = region.name.clone();
            if region.service_current(&self.revision) {
                self.ui.say(&format!(
                    "step 2 ({name}): {} already serves all traffic",
                    self.revision
                ));
                continue;
            }
            let step = if region.revision_exists {
                format!("2 (tag existing revision {})", self.revision)
            } else {
                format!("2 (create revision {})", self.revision)
            };
            self.ui.say(&format!("step {step} in {name}"));
            let splits = traffic::staged(&region.previous, &self.revision, &self.tag);
            let service = self.with_traffic(i, &splits, !region.revision_exists);
            self.changes.push(Change::Traffic {
                region: i,
                restore: self.regions[i].previous.clone(),
            });
            let updated = self
                .cloud
                .update_service(service, &format!("{name}: {}", traffic::describe(&splits)))
                .await
                .step(&step, &name)?;
            let url = tagged_url(&updated, &self.tag)
                .with_context(|| format!("the service reports no URL for tag {}", self.tag))
                .step(&step, &name)?;
            self.check_revision(&name, &url, &updated.uri)
                .await
                .step(&format!("2 (check the tagged URL {url})"), &name)?;
            self.regions[i].service = updated;
        }

        // Step 3: traffic, the canary first when asked.
        if let Some(percent) = self.args.canary {
            for i in 0..total {
                if self.regions[i].service_current(&self.revision) {
                    continue;
                }
                let name = self.regions[i].name.clone();
                let splits = traffic::canary(
                    &self.regions[i].previous,
                    &self.revision,
                    &self.tag,
                    percent,
                );
                let step = format!("3 (canary {percent}% to {})", self.revision);
                let service = self.with_traffic(i, &splits, false);
                self.cloud
                    .update_service(service, &format!("{name}: {}", traffic::describe(&splits)))
                    .await
                    .step(&step, &name)?;
            }
            if self.args.canary_wait > 0 {
                self.ui.say(&format!(
                    "step 3: holding the canary for {} s",
                    self.args.canary_wait
                ));
                tokio::time::sleep(Duration::from_secs(self.args.canary_wait)).await;
            }
            for i in 0..total {
                if self.regions[i].service_current(&self.revision) {
                    continue;
                }
                let name = self.regions[i].name.clone();
                let service = self.regions[i].service.clone();
                if let Some(url) = tagged_url(&service, &self.tag) {
                    self.check_revision(&name, &url, &service.uri)
                        .await
                        .step(&format!("3 (check the canary on {url})"), &name)?;
                }
            }
        }
        for i in 0..total {
            if self.regions[i].service_current(&self.revision) {
                continue;
            }
            let name = self.regions[i].name.clone();
            let splits = traffic::full(&self.revision, &self.tag);
            let step = format!("3 (100% to {})", self.revision);
            let service = self.with_traffic(i, &splits, false);
            let updated = self
                .cloud
                .update_service(service, &format!("{name}: {}", traffic::describe(&splits)))
                .await
                .step(&step, &name)?;
            self.regions[i].service = updated;
        }

        // Step 4: API configs (one at a time) and gateways.
        for i in 0..total {
            let region = &self.regions[i];
            let name = region.name.clone();
            if region.gateway_current() {
                self.ui.say(&format!(
                    "step 4 ({name}): gateway already serves {}",
                    region.config_id
                ));
                continue;
            }
            let step = format!("4 (API config {})", region.config_id);
            self.ensure_config(i).await.step(&step, &name)?;
            let region = &self.regions[i];
            let step = format!(
                "4 (point gateway {} at {})",
                short_config(&region.gateway_name),
                region.config_id
            );
            self.changes.push(Change::Gateway {
                region: i,
                restore: region.gateway_config.clone(),
            });
            let gateway = self
                .cloud
                .set_gateway_config(
                    &region.gateway_name,
                    &region.config_name,
                    &format!(
                        "{name}: gateway {} → {}",
                        short_config(&region.gateway_name),
                        region.config_id
                    ),
                )
                .await
                .step(&step, &name)?;
            let hostname = if gateway.default_hostname.is_empty() {
                region.gateway_hostname.clone()
            } else {
                gateway.default_hostname
            };
            let seen = self
                .prober
                .check_gateway(&hostname)
                .await
                .step(&format!("4 (check the gateway {hostname})"), &name)?;
            self.ui.say(&format!("  ✓ {name}: {seen}"));
            if let Some(gate) = &self.gate {
                let base = probe::gateway_base(&hostname);
                let met = gate.check(&base).await.step("4 (SLO gate)", &name)?;
                self.ui.say(&format!("  ✓ {name}: {met}"));
            }
        }
        Ok(())
    }

    /// The region's service as read, with `splits` as its traffic and, when `new_revision`, a
    /// template for the new revision running the image.
    fn with_traffic(&self, i: usize, splits: &[Split], new_revision: bool) -> Service {
        let mut service = self.regions[i].service.clone();
        service.traffic = splits.iter().map(Split::to_target).collect();
        if new_revision {
            let template = service.template.get_or_insert_with(Default::default);
            template.revision.clone_from(&self.revision);
            let index = template
                .containers
                .iter()
                .position(|c| c.name == "app")
                .or_else(|| template.containers.iter().position(|c| !c.ports.is_empty()))
                .unwrap_or(0);
            if template.containers.is_empty() {
                template.containers.push(Default::default());
            }
            template.containers[index].image.clone_from(&self.image);
        }
        service
    }

    async fn check_revision(&self, region: &str, url: &str, audience: &str) -> anyhow::Result<()> {
        self.prober.check_revision(url, audience).await?;
        self.ui.say(&format!(
            "  ✓ {region}: {url}/health/ready and {url}{} answer",
            probe::READ_PATH
        ));
        Ok(())
    }

    /// Creates the region's config unless a config with its id exists (ids are content hashes).
    async fn ensure_config(&self, i: usize) -> anyhow::Result<()> {
        let region = &self.regions[i];
        match self.cloud.get_config(&region.config_name).await? {
            Some(existing) => {
                use google_cloud_apigateway_v1::model::api_config::State;
                if existing.state != State::Active {
                    bail!(
                        "API config {} exists in state {:?}, not ACTIVE",
                        region.config_id,
                        existing.state
                    );
                }
                self.ui.say(&format!(
                    "step 4 ({}): API config {} exists; reusing it",
                    region.name, region.config_id
                ));
                Ok(())
            }
            None => {
                self.cloud
                    .create_config(
                        &api_name(self.env),
                        &region.config_id,
                        &region.config_file,
                        &region.yaml,
                        &self.env.gateway_service_account,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Undoes every change, newest first; returns a summary for the error message.
    async fn roll_back(&mut self) -> String {
        let mut lines = Vec::new();
        while let Some(change) = self.changes.pop() {
            let result = match &change {
                Change::Traffic { region, restore } => {
                    let r = &self.regions[*region];
                    let what = format!(
                        "{}: restoring traffic {}",
                        r.name,
                        traffic::describe(restore)
                    );
                    self.ui.say(&format!("rollback: {what}"));
                    let restored = async {
                        let mut service = self.cloud.get_service(&r.service_name).await?;
                        service.traffic = restore.iter().map(Split::to_target).collect();
                        self.cloud.update_service(service, &what).await
                    }
                    .await;
                    restored.map(|_| what)
                }
                Change::Gateway { region, restore } => {
                    let r = &self.regions[*region];
                    let what = format!(
                        "{}: gateway {} back to {}",
                        r.name,
                        short_config(&r.gateway_name),
                        short_config(restore)
                    );
                    self.ui.say(&format!("rollback: {what}"));
                    self.cloud
                        .set_gateway_config(&r.gateway_name, restore, &what)
                        .await
                        .map(|_| what)
                }
            };
            match result {
                Ok(what) => lines.push(format!("rolled back: {what}")),
                Err(e) => lines.push(format!("ROLLBACK FAILED ({change:?}): {e:#}")),
            }
        }
        if lines.is_empty() {
            "nothing had been changed".to_owned()
        } else {
            lines.join("\n")
        }
    }

    /// Step 6: delete the oldest configs beyond the limit, never one a gateway serves.
    async fn prune(&self) -> Result<(), Failure> {
        let step = "prune API configs";
        let delete = self.prune_candidates(false).await.step(step, "global")?;
        for name in delete {
            self.cloud.delete_config(&name).await.step(step, "global")?;
        }
        Ok(())
    }

    /// The configs pruning deletes — reads only. With `planned`, as it will be after the
    /// roll-out: the configs to create count as the newest, and the deployed regions' gateways
    /// serve their new configs.
    async fn prune_candidates(&self, planned: bool) -> anyhow::Result<Vec<String>> {
        let keep = self
            .args
            .keep_api_configs
            .unwrap_or(self.env.keep_api_configs as usize);
        let configs = self.cloud.list_configs(&api_name(self.env)).await?;
        // Newest first.
        let mut by_age: Vec<(i64, i32, String)> = configs
            .iter()
            .map(|c| {
                let (s, n) = c
                    .create_time
                    .as_ref()
                    .map_or((0, 0), |t| (t.seconds(), t.nanos()));
                (s, n, c.name.clone())
            })
            .collect();
        by_age.sort_by(|a, b| b.cmp(a));
        let mut names: Vec<String> = by_age.into_iter().map(|(_, _, n)| n).collect();
        // Every gateway of the environment, not only the regions deployed now.
        let mut in_use = Vec::new();
        for r in &self.env.regions {
            let deployed = self.regions.iter().find(|d| d.name == r.name);
            match deployed {
                Some(d) if planned => in_use.push(d.config_name.clone()),
                _ => {
                    let gateway = format!(
                        "projects/{}/locations/{}/gateways/{}",
                        self.env.project_id, r.name, r.gateway_id
                    );
                    in_use.push(self.cloud.get_gateway(&gateway).await?.api_config);
                }
            }
        }
        if planned {
            for r in self.regions.iter().rev() {
                if !names.contains(&r.config_name) {
                    names.insert(0, r.config_name.clone());
                }
            }
        }
        Ok(prune_selection(&names, keep, &in_use))
    }

    async fn print_plan(&self, repository: &str) -> anyhow::Result<()> {
        let env = self.env;
        let revision = if self.image.is_empty() {
            format!(
                "{}-<first 12 hex digits of the new image digest>",
                env.service
            )
        } else {
            self.revision.clone()
        };
        println!(
            "Plan for {} (project {}), {} region(s). Nothing is changed.",
            env.name,
            env.project_id,
            self.regions.len()
        );
        if self.image.is_empty() {
            println!(
                " 1. image: build the release binary and the OCI image, push {repository}:{}",
                image_tag().await
            );
        } else {
            println!(" 1. image: {} (given, not built)", self.image);
        }
        let tag = if self.image.is_empty() {
            "deploy-<digest prefix>"
        } else {
            self.tag.as_str()
        };
        println!(" 2. revisions (0% traffic, tag {tag}):");
        for r in &self.regions {
            if !self.image.is_empty() && r.service_current(&self.revision) {
                println!(
                    "    {}: {} already serves 100%: unchanged",
                    r.name, self.revision
                );
            } else if r.revision_exists {
                println!(
                    "    {}: {} exists; tag it on {} (serving now: {})",
                    r.name,
                    revision,
                    r.service_name,
                    traffic::describe(&r.previous)
                );
            } else {
                println!(
                    "    {}: create {revision} on {} (serving now: {}); check its tagged URL /health/ready and {}",
                    r.name,
                    r.service_name,
                    traffic::describe(&r.previous),
                    probe::READ_PATH
                );
            }
        }
        println!(" 3. traffic:");
        for r in &self.regions {
            if !self.image.is_empty() && r.service_current(&self.revision) {
                println!("    {}: unchanged", r.name);
                continue;
            }
            match self.args.canary {
                Some(p) => println!(
                    "    {}: {} → {} → {revision} 100%",
                    r.name,
                    traffic::describe(&r.previous),
                    traffic::describe(&traffic::canary(&r.previous, &revision, &self.tag, p))
                ),
                None => println!(
                    "    {}: {} → {revision} 100%",
                    r.name,
                    traffic::describe(&r.previous)
                ),
            }
        }
        println!(" 4. API Gateway (API {}):", api_name(env));
        for r in &self.regions {
            if r.gateway_current() {
                println!(
                    "    {}: gateway {} already serves {}: unchanged",
                    r.name, r.gateway_name, r.config_id
                );
                continue;
            }
            let exists = self.cloud.get_config(&r.config_name).await?.is_some();
            println!(
                "    {}: {} config {}; point {} at it (now {}); check a request through {}",
                r.name,
                if exists { "reuse existing" } else { "create" },
                r.config_name,
                r.gateway_name,
                if r.gateway_config.is_empty() {
                    "none"
                } else {
                    short_config(&r.gateway_config)
                },
                probe::gateway_base(&r.gateway_hostname)
            );
            if let Some(gate) = &self.gate {
                println!("       then {}", gate.describe());
            }
        }
        println!(
            " 5. on failure: restore the previous traffic and API config in every region already changed, newest first"
        );
        let delete = self.prune_candidates(true).await?;
        let keep = self
            .args
            .keep_api_configs
            .unwrap_or(env.keep_api_configs as usize);
        if delete.is_empty() {
            println!(
                " 6. prune: keep the {keep} newest configs and those gateways serve: nothing to delete"
            );
        } else {
            println!(
                " 6. prune: keep the {keep} newest configs and those gateways serve; after the roll-out, delete:"
            );
            for d in delete {
                println!("    {d}");
            }
        }
        Ok(())
    }
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

/// The URL Cloud Run gives the revision tagged `tag`.
fn tagged_url(service: &Service, tag: &str) -> Option<String> {
    service
        .traffic_statuses
        .iter()
        .find(|s| s.tag == tag && !s.uri.is_empty())
        .map(|s| s.uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_skips_the_newest_and_those_in_use() {
        let names: Vec<String> = ["e", "d", "c", "b", "a"].map(String::from).to_vec();
        assert_eq!(prune_selection(&names, 2, &["a".to_owned()]), ["c", "b"]);
        assert_eq!(prune_selection(&names, 9, &[]), Vec::<String>::new());
    }

    #[test]
    fn images_must_be_pinned_by_digest() {
        let hex = "a".repeat(64);
        assert!(check_pinned(&format!("europe-docker.pkg.dev/p/r/i@sha256:{hex}")).is_ok());
        assert!(check_pinned("europe-docker.pkg.dev/p/r/i:latest").is_err());
        assert!(check_pinned("r/i@sha256:abc").is_err());
    }
}
