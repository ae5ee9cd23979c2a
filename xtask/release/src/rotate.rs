//! `cargo xtask rotate page-token|db-password --env <env>`: rotates a secret of the service
//! without failing a request (docs/deploy.md, "Rotating secrets").
//!
//! - `page-token`: the HMAC key of page tokens, in the phases of `keys.rs` (add, sign, retire),
//!   each refused until the previous one serves in every region. The command adds the key
//!   version (Secret Manager `addVersion`). Where Terraform owns the service's volumes (dev,
//!   stage, prod) it prints the module variables to apply and the deploy that rolls them out;
//!   on `--env local`, where `cargo xtask cloud` plays Terraform, it patches each region's
//!   service itself and runs that deploy.
//! - `db-password`: a new version of the runtime user's password secret, then the migrate job
//!   (`<service>-migrate`, Cloud Run Admin API v2 `jobs.run`), which sets the secret's `latest`
//!   on the database user. Serving instances keep connecting with the old password until the
//!   job has run; afterwards a refused connection makes them read the file again.

mod keys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::client_builder::ClientBuilder;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_lro::Poller as _;
use google_cloud_run_v2::client::{Jobs, Revisions, Services};
use google_cloud_run_v2::model::{Container, Service, Volume};
use items_gateway_spec::Environment;

use self::keys::{Keys, Phase};
use crate::util;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    secret: Secret,
}

#[derive(Debug, clap::Subcommand)]
enum Secret {
    /// The page-token HMAC key, one phase per run: `add` (a new key version verifies in every
    /// region), `sign` (it signs; the previous one still verifies), `retire` (older versions stop
    /// verifying). Each phase is refused until the previous one serves everywhere.
    PageToken(PageTokenArgs),
    /// The runtime database user's password: a new secret version with a fresh password, then
    /// the migrate job sets it on the user.
    DbPassword(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The environment: a file stem of deploy/environments.
    #[arg(long)]
    env: String,

    // For tests against a local fake control plane (as `deploy`).
    /// Directory of the environment files.
    #[arg(long, hide = true, default_value = "deploy/environments")]
    environments: PathBuf,
    #[arg(long, hide = true, env = "XTASK_RUN_ENDPOINT")]
    run_endpoint: Option<String>,
    #[arg(long, hide = true, env = "XTASK_SECRETMANAGER_ENDPOINT")]
    secretmanager_endpoint: Option<String>,
    /// Anonymous credentials for the clients.
    #[arg(long, hide = true)]
    anonymous: bool,
}

#[derive(Debug, clap::Args)]
struct PageTokenArgs {
    #[command(flatten)]
    target: Target,
    /// The phase to run (default: `sign` while an added version does not sign yet, else `add`;
    /// `retire` only when named).
    #[arg(long, value_enum)]
    phase: Option<Phase>,
    /// `--env local`: the deploy that rolls the phase out sends this percentage to the new
    /// revision first (`deploy --canary`).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(i32).range(1..=99))]
    canary: Option<i32>,
    /// `--env local`: seconds the canary is held (`deploy --canary-wait`).
    #[arg(long, value_name = "SECONDS", requires = "canary")]
    canary_wait: Option<u64>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.secret {
        Secret::PageToken(args) => page_token(args).await,
        Secret::DbPassword(target) => db_password(target).await,
    }
}

/// The environment played by `cargo xtask cloud`.
const LOCAL: &str = "local";
/// Length of a generated page-token key (as Terraform's `random_password` in the cloudrun module).
const KEY_CHARS: usize = 64;
/// Length of a generated database password (as the cloudsql module's).
const PASSWORD_CHARS: usize = 40;

/// One region's service: its name, the keys its template pins and those of each revision that
/// serves traffic.
struct Region {
    name: String,
    service: Service,
    keys: Keys,
    serving: Vec<(String, Keys)>,
}

async fn page_token(args: PageTokenArgs) -> anyhow::Result<ExitCode> {
    let google = Google::connect(&args.target).await?;
    let mut regions = Vec::new();
    for name in google.service_names() {
        regions.push(google.region(&name).await?);
    }
    let Some(first) = regions.first() else {
        bail!("{} has no region", google.env.name);
    };
    let keys = first.keys.clone();
    for region in &regions {
        if region.keys != keys {
            bail!(
                "the regions pin different page-token keys: {} {}, {} {}; make them agree first",
                first.name,
                first.keys,
                region.name,
                region.keys
            );
        }
        for (revision, serving) in &region.serving {
            if *serving != keys {
                bail!(
                    "{revision} serves traffic in {} and {serving}, but the service's configuration {keys}: \
                     roll the previous phase out first (`cargo xtask deploy --env {}`)",
                    region.name,
                    google.env.name
                );
            }
        }
    }
    let phase = args.phase.unwrap_or_else(|| keys.next_phase());
    // Refuse a phase out of order before a version is added.
    keys.after(phase, phase.adds_version().then_some(u64::MAX))?;
    let secret = page_token_secret(&google.env, &first.service)?;
    let added = if phase.adds_version() {
        let version = google
            .secrets
            .add_version(&secret, random_text(KEY_CHARS)?.as_bytes())
            .await?;
        println!("added version {version} of {secret}");
        Some(version)
    } else {
        None
    };
    let next = keys.after(phase, added)?;
    println!(
        "page-token key, phase {}: {keys} → {next}",
        phase_name(phase)
    );
    if google.env.name != LOCAL {
        print_terraform_steps(&google.env, &next, &regions);
        return Ok(ExitCode::SUCCESS);
    }
    // Local: what `terraform apply` would change, then the deploy that rolls it out.
    for region in &regions {
        let mut service = region.service.clone();
        pin(&mut service, &next)?;
        google.update_service(service).await?;
    }
    roll_out(&google.env, image_of(first)?, &args).await?;
    for name in google.service_names() {
        let region = google.region(&name).await?;
        if let Some((revision, keys)) = region.serving.iter().find(|(_, k)| *k != next) {
            bail!(
                "after the deploy {revision} still serves traffic in {} with a page-token key that {keys}",
                region.name
            );
        }
    }
    println!(
        "done: every region {next}{}",
        match phase {
            Phase::Add => "; next: `--phase sign`",
            Phase::Sign | Phase::OneStep =>
                "; once clients' paging has moved on (tokens do not expire): `--phase retire`",
            Phase::Retire => "",
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn phase_name(phase: Phase) -> String {
    clap::ValueEnum::to_possible_value(&phase)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// What a platform engineer runs where Terraform owns the volume.
fn print_terraform_steps(env: &Environment, next: &Keys, regions: &[Region]) {
    let image = regions
        .first()
        .and_then(|r| image_of(r).ok())
        .unwrap_or("<the serving image>");
    println!(
        "\nNext, in deploy/terraform/envs/{env}/main.tf (module \"stack\"):\n\n{}\n\n\
         then `terraform -chdir=deploy/terraform/envs/{env} apply` and roll the new configuration out:\n\
         `cargo xtask deploy --env {env} --image {image}`.\n\
         Run this command again for the next phase once every region serves it.",
        next.terraform(),
        env = env.name
    );
}

/// Sets `next` on the service's template (a new revision, without traffic, until deploy rolls
/// it). Cloud Run generates the revision's name: the template's is cleared (a changed template
/// under a used name is refused with 409, hashicorp/terraform-provider-google#14569).
fn pin(service: &mut Service, next: &Keys) -> anyhow::Result<()> {
    let name = service.name.clone();
    let template = service
        .template
        .as_mut()
        .with_context(|| format!("{name} has no template"))?;
    template.revision.clear();
    let app =
        app_mut(&mut template.containers).with_context(|| format!("{name} has no container"))?;
    let mount = app
        .volume_mounts
        .iter()
        .find(|m| m.name == keys::VOLUME)
        .map(|m| m.mount_path.clone())
        .with_context(|| {
            format!(
                "{name}: the app container does not mount the {} volume",
                keys::VOLUME
            )
        })?;
    next.apply(&mut template.volumes, app, &mount);
    Ok(())
}

/// `cargo xtask deploy --env local --image <serving image>`: rolls the new configuration out
/// (a new revision, canary, 100%) as it would after `terraform apply`.
async fn roll_out(env: &Environment, image: &str, args: &PageTokenArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the xtask executable")?;
    let mut deploy = tokio::process::Command::new(exe);
    deploy.args(["deploy", "--env", &env.name, "--image", image]);
    if let Some(canary) = args.canary {
        deploy.args(["--canary", &canary.to_string()]);
    }
    if let Some(wait) = args.canary_wait {
        deploy.args(["--canary-wait", &wait.to_string()]);
    }
    let status = deploy
        .status()
        .await
        .context("running cargo xtask deploy")?;
    if !status.success() {
        bail!("the deploy that rolls the page-token key out failed ({status})");
    }
    Ok(())
}

async fn db_password(target: Target) -> anyhow::Result<ExitCode> {
    let google = Google::connect(&target).await?;
    let names = google.service_names();
    let first = names.first().context("the environment has no region")?;
    let service = google.get_service(first).await?;
    let secret = password_secret(&google.env, &service)?;
    // The job runs where the database is: the primary (first) region, as Terraform's
    // migrator.region.
    let job = format!(
        "projects/{}/locations/{}/jobs/{}-migrate",
        google.env.project_id, google.env.regions[0].name, google.env.service
    );
    google
        .jobs
        .get_job()
        .set_name(&job)
        .send()
        .await
        .map_err(google_error(format!("jobs.get {job}")))?;
    // The secret first, the database second: until the job has run, instances that started
    // before keep connecting with the old password (still the database's), and one that starts
    // in between reads the new one, fails its readiness check (it touches the database) and
    // gets no traffic until the job sets it. The reverse order would refuse every new
    // connection of every instance until the secret changed.
    let version = google
        .secrets
        .add_version(&secret, random_text(PASSWORD_CHARS)?.as_bytes())
        .await?;
    println!("added version {version} of {secret}; running {job}");
    let execution = google
        .jobs
        .run_job()
        .set_name(&job)
        .poller()
        .until_done()
        .await
        .map_err(google_error(format!("jobs.run {job}")))?;
    if execution.failed_count > 0 || execution.succeeded_count < 1 {
        bail!(
            "{} did not succeed ({} task(s) failed): the database user still has the old password \
             while {secret} holds version {version}; instances started from now on cannot connect. \
             Run `cargo xtask rotate db-password --env {}` again",
            execution.name,
            execution.failed_count,
            google.env.name
        );
    }
    println!(
        "done: {} set version {version} of {secret} on the database user; serving instances read \
         it when their next new connection is refused",
        execution.name
    );
    Ok(ExitCode::SUCCESS)
}

/// The clients, pointed at Google or at the local cloud.
struct Google {
    env: Environment,
    services: Services,
    revisions: Revisions,
    jobs: Jobs,
    secrets: SecretManager,
}

fn configure<F>(
    builder: ClientBuilder<F, Credentials>,
    endpoint: Option<&String>,
    local: bool,
    anonymous: bool,
) -> anyhow::Result<ClientBuilder<F, Credentials>> {
    let mut builder = builder;
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if anonymous {
        builder = builder
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    }
    if local {
        let interval = Duration::from_millis(100);
        builder = builder.with_polling_backoff_policy(
            ExponentialBackoffBuilder::new()
                .with_initial_delay(interval)
                .with_maximum_delay(interval * 4)
                .build()
                .context("polling backoff")?,
        );
    }
    Ok(builder)
}

impl Google {
    async fn connect(target: &Target) -> anyhow::Result<Self> {
        let root = util::project_root();
        let dir = if target.environments.is_absolute() {
            target.environments.clone()
        } else {
            root.join(&target.environments)
        };
        let path = dir.join(format!("{}.toml", target.env));
        if !path.is_file() {
            bail!(
                "there is no environment {:?} ({} does not exist)",
                target.env,
                path.display()
            );
        }
        let env = Environment::load(&path)?;
        let local = env.name == LOCAL;
        let (mut run, mut secrets, mut anonymous) = (
            target.run_endpoint.clone(),
            target.secretmanager_endpoint.clone(),
            target.anonymous,
        );
        if local {
            // The local cloud serves both APIs on its control plane, without credentials.
            let state = crate::cloud::read_state(&env.name)?;
            run.get_or_insert_with(|| state.control_plane.clone());
            secrets.get_or_insert(state.control_plane);
            anonymous = true;
        }
        crate::oci::install_crypto_provider();
        let services = configure(Services::builder(), run.as_ref(), local, anonymous)?
            .build()
            .await
            .context("creating the Cloud Run client (Application Default Credentials)")?;
        let revisions = configure(Revisions::builder(), run.as_ref(), local, anonymous)?
            .build()
            .await
            .context("creating the Cloud Run client (Application Default Credentials)")?;
        let jobs = configure(Jobs::builder(), run.as_ref(), local, anonymous)?
            .build()
            .await
            .context("creating the Cloud Run client (Application Default Credentials)")?;
        Ok(Self {
            env,
            services,
            revisions,
            jobs,
            secrets: SecretManager::new(secrets, anonymous)?,
        })
    }

    fn service_names(&self) -> Vec<String> {
        self.env
            .regions
            .iter()
            .map(|r| {
                format!(
                    "projects/{}/locations/{}/services/{}",
                    self.env.project_id, r.name, self.env.service
                )
            })
            .collect()
    }

    async fn get_service(&self, name: &str) -> anyhow::Result<Service> {
        self.services
            .get_service()
            .set_name(name)
            .send()
            .await
            .map_err(google_error(format!("services.get {name}")))
    }

    async fn update_service(&self, service: Service) -> anyhow::Result<Service> {
        let name = service.name.clone();
        self.services
            .update_service()
            .set_service(service)
            .poller()
            .until_done()
            .await
            .map_err(google_error(format!("services.patch {name}")))
    }

    /// The service `name`, its template's page-token keys and those of its serving revisions.
    async fn region(&self, name: &str) -> anyhow::Result<Region> {
        let service = self.get_service(name).await?;
        let volumes = service
            .template
            .as_ref()
            .map(|t| t.volumes.as_slice())
            .unwrap_or_default();
        let keys = Keys::of(volumes)?.with_context(|| {
            format!(
                "{name} mounts no {} volume (Terraform's cloudrun module creates it)",
                keys::VOLUME
            )
        })?;
        let mut serving = Vec::new();
        for status in service.traffic_statuses.iter().filter(|t| t.percent > 0) {
            // The short name (a full one is cut to it), or for a "latest" entry the latest ready
            // revision.
            let named = if status.revision.is_empty() {
                &service.latest_ready_revision
            } else {
                &status.revision
            };
            let short = named.rsplit('/').next().unwrap_or_default();
            let revision = format!("{name}/revisions/{short}");
            let got = self
                .revisions
                .get_revision()
                .set_name(&revision)
                .send()
                .await
                .map_err(google_error(format!("revisions.get {revision}")))?;
            let keys = Keys::of(&got.volumes)
                .with_context(|| {
                    format!(
                        "{revision} serves traffic: roll the service's configuration out first \
                         (cargo xtask deploy --env {})",
                        self.env.name
                    )
                })?
                .with_context(|| format!("{revision} mounts no {} volume", keys::VOLUME))?;
            let image = app(&got.containers)
                .map(|c| c.image.clone())
                .unwrap_or_default();
            serving.push((format!("{revision} ({image})"), keys));
        }
        Ok(Region {
            name: name.to_owned(),
            service,
            keys,
            serving,
        })
    }
}

/// The image of the region's service (the app container of its template: deploy's image).
fn image_of(region: &Region) -> anyhow::Result<&str> {
    region
        .service
        .template
        .as_ref()
        .and_then(|t| app(&t.containers))
        .map(|c| c.image.as_str())
        .filter(|i| !i.is_empty())
        .with_context(|| format!("{} has no image", region.name))
}

/// The ingress container, `app` in Terraform's module.
fn app(containers: &[Container]) -> Option<&Container> {
    containers
        .iter()
        .find(|c| c.name == "app")
        .or(containers.first())
}

fn app_mut(containers: &mut [Container]) -> Option<&mut Container> {
    let at = containers
        .iter()
        .position(|c| c.name == "app")
        .unwrap_or_default();
    containers.get_mut(at)
}

/// `projects/{p}/secrets/{s}` of the secret volume `volume` of the service's template.
fn volume_secret(env: &Environment, service: &Service, volume: &str) -> anyhow::Result<String> {
    let secret = service
        .template
        .as_ref()
        .and_then(|t| t.volumes.iter().find(|v| v.name == volume))
        .and_then(Volume::secret)
        .map(|s| s.secret.clone())
        .with_context(|| format!("{} has no secret volume {volume:?}", service.name))?;
    // "Format: {secret} if the secret is in the same project. projects/{project}/secrets/{secret}
    // if the secret is in a different project." (SecretVolumeSource.secret, Cloud Run Admin v2)
    Ok(if secret.starts_with("projects/") {
        secret
    } else {
        format!("projects/{}/secrets/{secret}", env.project_id)
    })
}

fn page_token_secret(env: &Environment, service: &Service) -> anyhow::Result<String> {
    volume_secret(env, service, keys::VOLUME)
}

/// The runtime password: the secret mounted as the `db-password` volume (Terraform's
/// `database.password_secret_name`, read through APP__DATABASE__PASSWORD_FILE).
fn password_secret(env: &Environment, service: &Service) -> anyhow::Result<String> {
    volume_secret(env, service, "db-password")
}

fn google_error(what: String) -> impl FnOnce(google_cloud_gax::error::Error) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {}", crate::deploy::cloud::describe(&e))
}

/// `n` characters of `[A-Za-z0-9]` from the operating system's generator (ring's
/// `SystemRandom`), unbiased (bytes ≥ 248 are drawn again).
fn random_text(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        rng.fill(&mut buf)
            .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
        for b in buf {
            if out.len() < n && usize::from(b) < 4 * ALPHABET.len() {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// Secret Manager v1 over REST (no Rust client of Google's is in the build):
/// `POST https://secretmanager.googleapis.com/v1/{parent=projects/*/secrets/*}:addVersion` with
/// `{"payload": {"data": <base64>}}`, answered with the new SecretVersion, whose `name` ends in
/// `/versions/<n>` (Secret Manager REST reference, "Method: projects.secrets.addVersion").
struct SecretManager {
    http: reqwest::Client,
    endpoint: String,
    anonymous: bool,
}

impl SecretManager {
    fn new(endpoint: Option<String>, anonymous: bool) -> anyhow::Result<Self> {
        crate::oci::install_crypto_provider();
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            endpoint: endpoint
                .unwrap_or_else(|| "https://secretmanager.googleapis.com".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            anonymous,
        })
    }

    /// Adds a version holding `data` to `secret` (`projects/{p}/secrets/{s}`); its number.
    async fn add_version(&self, secret: &str, data: &[u8]) -> anyhow::Result<u64> {
        let what = format!("secrets.addVersion {secret}");
        let mut request = self
            .http
            .post(format!("{}/v1/{secret}:addVersion", self.endpoint))
            .json(&serde_json::json!({
                "payload": {"data": base64::engine::general_purpose::STANDARD.encode(data)}
            }));
        if !self.anonymous {
            let token = google_cloud_auth::credentials::Builder::default()
                .build_access_token_credentials()
                .context("loading Application Default Credentials")?
                .access_token()
                .await
                .context("getting an access token from Application Default Credentials")?;
            request = request.bearer_auth(token.token);
        }
        let response = request.send().await.with_context(|| what.clone())?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{what}: HTTP {}, {}: {}",
                status.as_u16(),
                body["error"]["status"].as_str().unwrap_or("?"),
                body["error"]["message"].as_str().unwrap_or("")
            );
        }
        body["name"]
            .as_str()
            .and_then(|n| n.rsplit_once("/versions/"))
            .and_then(|(_, v)| v.parse().ok())
            .with_context(|| format!("{what}: the answer names no version: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_text_is_alphanumeric_of_the_length_asked() {
        let a = random_text(KEY_CHARS).unwrap();
        let b = random_text(KEY_CHARS).unwrap();
        assert_eq!(a.len(), KEY_CHARS);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
