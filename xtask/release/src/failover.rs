//! `cargo xtask failover`: the steps of the multi-region runbook (docs/deploy.md, "Failover
//! runbook") that Google's APIs allow, as commands: take a region's gateway out of the global load
//! balancer and put it back (Compute Engine `backendServices`), and promote the cross-region Cloud
//! SQL replica (Cloud SQL Admin `instances.promoteReplica`).
//!
//! Resource names follow `deploy/terraform/modules/stack/multi_region.tf`: the backend service
//! `<service>-<env>-gateways`, one serverless NEG `<service>-<env>-<region>` per region, the
//! replica `<service>-<env>-dr`. Every change asks for confirmation on a terminal unless `--yes`,
//! and refuses without one. Pointing the services at the promoted instance stays a Terraform step:
//! the Cloud Run service's database settings are Terraform's fields (docs/deploy.md, "Who owns
//! which field"), and a change made around it would be reverted by the next apply.
//!
//! REST shapes, from Google's references:
//! - Compute Engine v1 `backendServices.get`/`patch` (JSON merge patch; the resource's
//!   `fingerprint` is its optimistic lock: "An up-to-date fingerprint must be provided in order to
//!   update the BackendService, otherwise the request will fail with error 412 conditionNotMet"),
//!   `regionNetworkEndpointGroups.get` (`selfLink`), `globalOperations.get` (`status` PENDING,
//!   RUNNING, DONE; `error.errors[]`).
//! - Cloud SQL Admin v1 `instances.get` (`instanceType` READ_REPLICA_INSTANCE, `state`,
//!   `masterInstanceName`), `instances.promoteReplica` (POST, empty body, query `failover`),
//!   `operations.get` (`status` PENDING, RUNNING, DONE; `error.errors[]`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use items_gateway_spec::Environment;
use serde_json::{Value, json};

use crate::util;

const COMPUTE: &str = "https://compute.googleapis.com";
const SQLADMIN: &str = "https://sqladmin.googleapis.com";
/// How long an operation may run before the command gives up waiting (it keeps running at Google).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Take REGION's gateway out of the global load balancer: its traffic goes to the other regions.
    Drain(RegionArg),
    /// Put REGION's gateway back into the global load balancer.
    Restore(RegionArg),
    /// Promote the cross-region Cloud SQL replica to a primary (writes the old primary accepted
    /// after the replica's last applied change are lost: replication is asynchronous).
    PromoteReplica {
        /// Enterprise Plus DR replica failover: the old primary rejoins as a replica of the
        /// promoted one when it comes back (Cloud SQL "Use advanced disaster recovery").
        #[arg(long)]
        failover: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RegionArg {
    /// The region whose gateway is drained or restored.
    #[arg(long)]
    region: String,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The environment: a file stem of deploy/environments.
    #[arg(long, global = true, default_value = "prod")]
    env: String,
    /// Change without asking (required when there is no terminal).
    #[arg(long, global = true)]
    yes: bool,
    // For tests against a local stand-in of the two APIs.
    #[arg(long, hide = true, global = true, default_value = COMPUTE)]
    compute_endpoint: String,
    #[arg(long, hide = true, global = true, default_value = SQLADMIN)]
    sqladmin_endpoint: String,
    /// No credentials (a local stand-in).
    #[arg(long, hide = true, global = true)]
    anonymous: bool,
    #[arg(long, hide = true, global = true, default_value_t = 2000)]
    poll_interval_ms: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = util::project_root()
        .join("deploy/environments")
        .join(format!("{}.toml", args.common.env));
    let env = Environment::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let api = Api::new(&args.common).await?;
    let names = Names::of(&env);
    match args.action {
        Action::Drain(RegionArg { region }) => drain(&api, &env, &names, &region).await,
        Action::Restore(RegionArg { region }) => restore(&api, &env, &names, &region).await,
        Action::PromoteReplica { failover } => promote(&api, &env, &names, failover).await,
    }
}

/// The resource names `modules/stack/multi_region.tf` gives.
struct Names {
    prefix: String,
}

impl Names {
    fn of(env: &Environment) -> Self {
        Self {
            prefix: format!("{}-{}", env.service, env.name),
        }
    }
    fn backend_service(&self) -> String {
        format!("{}-gateways", self.prefix)
    }
    fn neg(&self, region: &str) -> String {
        format!("{}-{region}", self.prefix)
    }
    fn replica(&self) -> String {
        format!("{}-dr", self.prefix)
    }
}

async fn drain(
    api: &Api,
    env: &Environment,
    names: &Names,
    region: &str,
) -> anyhow::Result<ExitCode> {
    let (url, service, backends, suffix) = read_backends(api, env, names, region).await?;
    let (drained, kept): (Vec<Value>, Vec<Value>) = backends
        .into_iter()
        .partition(|b| group(b).ends_with(&suffix));
    if drained.is_empty() {
        println!(
            "{region} is not in {}: nothing to drain",
            names.backend_service()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if kept.is_empty() {
        bail!(
            "{region} is the last region in {}: draining it would leave the load balancer with no backend",
            names.backend_service()
        );
    }
    let change = format!(
        "drain {region}: remove {} from {} ({} region(s) keep serving)",
        names.neg(region),
        names.backend_service(),
        kept.len()
    );
    if !api.confirm(&change)? {
        return Ok(ExitCode::FAILURE);
    }
    api.patch_backends(&url, &service, kept).await?;
    println!("done: {change}");
    println!(
        "record it in Terraform before the next apply (which would add it back): \
         global_lb_drained_regions = [\"{region}\"] in deploy/terraform/envs/{}/main.tf",
        env.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn restore(
    api: &Api,
    env: &Environment,
    names: &Names,
    region: &str,
) -> anyhow::Result<ExitCode> {
    let (url, service, mut backends, suffix) = read_backends(api, env, names, region).await?;
    if backends.iter().any(|b| group(b).ends_with(&suffix)) {
        println!(
            "{region} is in {} already: nothing to restore",
            names.backend_service()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let neg = api
        .get(&format!(
            "{}/compute/v1/projects/{}/regions/{region}/networkEndpointGroups/{}",
            api.compute,
            env.project_id,
            names.neg(region)
        ))
        .await?;
    let self_link = neg["selfLink"]
        .as_str()
        .with_context(|| format!("{} has no selfLink", names.neg(region)))?;
    let change = format!(
        "restore {region}: add {} to {}",
        names.neg(region),
        names.backend_service()
    );
    if !api.confirm(&change)? {
        return Ok(ExitCode::FAILURE);
    }
    backends.push(json!({ "group": self_link }));
    api.patch_backends(&url, &service, backends).await?;
    println!("done: {change}");
    println!(
        "remove \"{region}\" from global_lb_drained_regions in deploy/terraform/envs/{}/main.tf",
        env.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn promote(
    api: &Api,
    env: &Environment,
    names: &Names,
    failover: bool,
) -> anyhow::Result<ExitCode> {
    let replica = names.replica();
    let url = format!(
        "{}/v1/projects/{}/instances/{replica}",
        api.sqladmin, env.project_id
    );
    let instance = api.get(&url).await?;
    let kind = instance["instanceType"].as_str().unwrap_or("unknown");
    if kind != "READ_REPLICA_INSTANCE" {
        bail!("{replica} is not a read replica (instanceType {kind}): promoted already?");
    }
    let primary = instance["masterInstanceName"]
        .as_str()
        .unwrap_or("its primary");
    let change = format!(
        "promote {replica} ({}, state {}) to a primary{}; writes {primary} accepted after the \
         replica's last applied change are lost",
        instance["region"].as_str().unwrap_or("?"),
        instance["state"].as_str().unwrap_or("?"),
        if failover {
            " with DR replica failover (the old primary rejoins as its replica)"
        } else {
            "; the old primary stays independent"
        },
    );
    if !api.confirm(&change)? {
        return Ok(ExitCode::FAILURE);
    }
    let op = api
        .send(
            api.http
                .post(format!("{url}/promoteReplica"))
                .query(&[("failover", failover)]),
        )
        .await?;
    let op_name = op["name"]
        .as_str()
        .context("promoteReplica returned no operation name")?;
    let op_url = format!(
        "{}/v1/projects/{}/operations/{op_name}",
        api.sqladmin, env.project_id
    );
    api.wait(&op_url, op).await?;
    println!("done: {change}");
    println!(
        "next (docs/deploy.md, \"Failover runbook\" steps 4 and 5): point the services at {replica} \
         through Terraform and reconcile its state"
    );
    Ok(ExitCode::SUCCESS)
}

fn known_region(env: &Environment, region: &str) -> anyhow::Result<()> {
    if env.regions.iter().any(|r| r.name == region) {
        return Ok(());
    }
    let known: Vec<&str> = env.regions.iter().map(|r| r.name.as_str()).collect();
    bail!(
        "{} has no region {region:?} (regions: {})",
        env.name,
        known.join(", ")
    )
}

/// The backend service's URL, the service as read, its backends and the end of `region`'s NEG URL.
async fn read_backends(
    api: &Api,
    env: &Environment,
    names: &Names,
    region: &str,
) -> anyhow::Result<(String, Value, Vec<Value>, String)> {
    known_region(env, region)?;
    let url = api.backend_service_url(&env.project_id, &names.backend_service());
    let service = api.get(&url).await?;
    let backends = service["backends"].as_array().cloned().unwrap_or_default();
    Ok((
        url,
        service,
        backends,
        neg_suffix(region, &names.neg(region)),
    ))
}

fn group(backend: &Value) -> &str {
    backend["group"].as_str().unwrap_or_default()
}

/// The end of a NEG's URL, whichever form (full or partial) the API returned it in.
fn neg_suffix(region: &str, neg: &str) -> String {
    format!("/regions/{region}/networkEndpointGroups/{neg}")
}

/// The two REST APIs, authenticated with Application Default Credentials.
struct Api {
    http: reqwest::Client,
    credentials: Option<google_cloud_auth::credentials::Credentials>,
    compute: String,
    sqladmin: String,
    yes: bool,
    poll: Duration,
}

impl Api {
    async fn new(common: &Common) -> anyhow::Result<Self> {
        crate::oci::install_crypto_provider();
        let credentials = if common.anonymous {
            None
        } else {
            Some(
                google_cloud_auth::credentials::Builder::default()
                    .build()
                    .context(
                        "Application Default Credentials (gcloud auth application-default login)",
                    )?,
            )
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            credentials,
            compute: common.compute_endpoint.trim_end_matches('/').to_owned(),
            sqladmin: common.sqladmin_endpoint.trim_end_matches('/').to_owned(),
            yes: common.yes,
            poll: Duration::from_millis(common.poll_interval_ms),
        })
    }

    fn backend_service_url(&self, project: &str, name: &str) -> String {
        format!(
            "{}/compute/v1/projects/{project}/global/backendServices/{name}",
            self.compute
        )
    }

    async fn get(&self, url: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(url)).await
    }

    /// Sends `request` with the credentials' headers; a non-2xx answer is an error naming the
    /// method, URL, status and Google's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let mut request = request;
        if let Some(credentials) = &self.credentials {
            let headers = credentials
                .headers(http::Extensions::new())
                .await
                .context("getting an access token from Application Default Credentials")?;
            if let google_cloud_auth::credentials::CacheableResource::New { data, .. } = headers {
                request = request.headers(data);
            }
        }
        let request = request.build()?;
        let what = format!("{} {}", request.method(), request.url());
        let response = self
            .http
            .execute(request)
            .await
            .with_context(|| what.clone())?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{what}: {status}: {message}");
        }
        Ok(body)
    }

    /// Replaces the backend service's backends, sending the fingerprint read with it: a change
    /// made since fails with 412 instead of being overwritten.
    async fn patch_backends(
        &self,
        url: &str,
        service: &Value,
        backends: Vec<Value>,
    ) -> anyhow::Result<()> {
        let fingerprint = service["fingerprint"]
            .as_str()
            .context("the backend service has no fingerprint")?;
        let op = self
            .send(self.http.patch(url).json(&json!({ "backends": backends, "fingerprint": fingerprint })))
            .await
            .map_err(|e| {
                if e.to_string().contains("412") {
                    e.context("the backend service changed since it was read (fingerprint); run the command again")
                } else {
                    e
                }
            })?;
        let name = op["name"]
            .as_str()
            .context("the patch returned no operation name")?;
        let project = url
            .split("/projects/")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .context("project in the URL")?;
        let op_url = format!(
            "{}/compute/v1/projects/{project}/global/operations/{name}",
            self.compute
        );
        self.wait(&op_url, op).await
    }

    /// Polls an operation (Compute's and Cloud SQL's share `status` and `error.errors[]`) until
    /// DONE; its errors are the command's.
    async fn wait(&self, url: &str, mut op: Value) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT;
        while op["status"].as_str() != Some("DONE") {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "operation {url} still {} after {OPERATION_TIMEOUT:?}; it goes on at Google",
                    op["status"]
                );
            }
            tokio::time::sleep(self.poll).await;
            op = self.get(url).await?;
        }
        if let Some(errors) = op["error"]["errors"].as_array().filter(|e| !e.is_empty()) {
            let text: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            bail!(
                "operation {} failed: {}",
                op["name"].as_str().unwrap_or(url),
                text.join("; ")
            );
        }
        Ok(())
    }

    /// Whether to go ahead with `change`: `--yes`, or "yes" typed on a terminal.
    fn confirm(&self, change: &str) -> anyhow::Result<bool> {
        if self.yes {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            bail!("{change}: refused without a terminal to confirm on; pass --yes");
        }
        eprint!("{change}\ntype yes to go ahead: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() == "yes" {
            Ok(true)
        } else {
            eprintln!("nothing changed");
            Ok(false)
        }
    }
}
