//! `cargo xtask deploy --env <env>`: one trustworthy roll-out of the service to Cloud Run and
//! API Gateway in every region of an environment.
//!
//! 1. build and push the image (unless `--image <ref@digest>` is given);
//! 2. run the migrate job with the image and wait for its execution (`migrate_job.rs`); then in
//!    each region whose serving revision does not run the image with the service's current
//!    configuration, create a revision (Cloud Run names it; `revision.rs`) at 0% traffic with tag
//!    `deploy-<digest prefix>`, wait, and check its tagged URL (`/health/ready`, one API read);
//! 3. move traffic: `--canary <percent>` first (held `--canary-wait` seconds and re-checked),
//!    then 100%;
//! 4. render each region's API Gateway config (crate `items-gateway-spec`), create it when its
//!    id does not exist yet (one at a time, until ACTIVE), point the region's gateway at it,
//!    wait, and check one request through the gateway; with `--slo-p95-ms`, load it briefly and
//!    treat a missed objective as a failure of that region (`slo.rs`);
//! 5. on any failure, and on SIGINT/SIGTERM, restore the previous traffic and API config in every
//!    region already changed (newest change first), leaving alone what someone else changed since,
//!    and exit non-zero naming the step, region and Google's error (or the signal);
//! 6. prune the API's configs beyond `keep_api_configs`, never one a gateway serves.
//!
//! Steps 2–6 are computed once, as a [`Plan`] of typed steps (`plan.rs`), from the state read
//! (`state.rs`) and the inputs: `--plan` prints it and changes nothing; otherwise the executor
//! (`execute.rs`) runs it step by step, journaling each change (`journal.rs`) for the rollback.
//! A re-run with the same image, configuration and spec finds nothing to do and says so.
//!
//! Before reading the state a deploy takes the environment's lease, and keeps its journal with
//! it (`lease.rs`: annotations on the first region's service, and a local file): a second deploy
//! is refused, and `--rollback` undoes, from that journal, a deploy that died. Production asks for
//! a confirmation (`--yes` in CI).

pub(crate) mod cloud;
mod execute;
mod interrupt;
mod journal;
mod lease;
mod migrate_job;
mod plan;
mod probe;
mod revision;
mod slo;
mod state;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use items_gateway_spec::Environment;

use self::cloud::{Cloud, Connection, Ui};
use self::execute::{Executor, Failure};
use self::interrupt::{Interrupt, Signalled};
use self::journal::Journal;
use self::lease::Lease;
use self::plan::{Image, Plan};
use self::probe::Prober;
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
    /// Undo, from its journal, a deploy of the environment that did not finish (killed, or its
    /// machine lost): restore what it changed and is still as it left it.
    #[arg(long, conflicts_with_all = ["plan", "image", "canary"])]
    rollback: bool,
    /// Break the environment's lease when it has expired (its holder died).
    #[arg(long)]
    break_lease: bool,
    /// Deploy to (or roll back) production without asking; required without a terminal.
    #[arg(long)]
    yes: bool,

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
    /// Directory of the local copy of the journal (default target/deploy-journal).
    #[arg(long, hide = true, env = "XTASK_DEPLOY_JOURNAL_DIR")]
    journal_dir: Option<PathBuf>,
}

pub(crate) async fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let env = load_environment(&args)?;
    // `--env local`: the same plan and executor against the local cloud `cargo xtask cloud`
    // runs; only the endpoints and credentials differ.
    let local = (env.name == LOCAL)
        .then(|| local_cloud(&mut args, &env))
        .transpose()?;
    if !args.anonymous
        && let Err(missing) = cloud::check_credentials(CREDENTIALS_TIMEOUT).await
    {
        eprintln!("error: {missing}");
        return Ok(ExitCode::from(2));
    }
    if let Some(refused) = confirm(&args, &env)? {
        return Ok(refused);
    }
    let ui = Ui::new();
    let conn = Connection {
        run_endpoint: args.run_endpoint.clone(),
        apigateway_endpoint: args.apigateway_endpoint.clone(),
        anonymous: args.anonymous,
        poll_interval: args.poll_interval_ms.map(Duration::from_millis),
    };
    if args.rollback {
        let cloud = Cloud::connect(&conn, ui).await?;
        return rollback(&args, &env, &cloud, ui).await;
    }
    let region_names = selected_regions(&env, &args.regions)?;
    // Step 1 comes first: whether a region already serves the image is decided by its digest.
    let image = image(&args, &env, ui).await?;
    let cloud = Cloud::connect(&conn, ui).await?;
    if args.plan {
        let state = state::read(&cloud, &env, &region_names).await?;
        let plan = Plan::new(&env, state, inputs(&args, &env, image));
        print!("{}", plan.render());
        return Ok(ExitCode::SUCCESS);
    }
    let prober = Prober::new(args.anonymous, args.api_key.clone(), args.anonymous)?
        .with_token(args.slo.token.clone())
        .with_local_identity(local.map(|state| state.deployer));
    // From here on a signal rolls back instead of killing the process.
    let mut interrupt = Interrupt::install()?;
    let action = format!("deploy {}", image.reference().unwrap_or_default());
    let (lease, _) = Lease::take(&cloud, &env, &lease_options(&args, action), ui).await?;
    let journal = Journal::new(Some(lease));
    let state = tokio::select! {
        state = state::read(&cloud, &env, &region_names) => state,
        signal = interrupt.wait() => {
            journal.close(ui).await;
            eprintln!("interrupted by {} before any change; nothing was changed", signal.name());
            return Ok(ExitCode::from(signal.exit_code()));
        }
    };
    let state = match state {
        Ok(state) => state,
        Err(e) => {
            journal.close(ui).await;
            return Err(e);
        }
    };
    let plan = Plan::new(&env, state, inputs(&args, &env, image));
    let migrate = migrate_job::MigrateJob::connect(&conn, ui).await?;
    let executor = Executor::new(&plan, &env, cloud, ui, prober, journal).with_migrate_job(migrate);
    execute(&plan, executor, &mut interrupt).await
}

/// What the plan is computed from besides the state.
fn inputs(args: &Args, env: &Environment, image: Image) -> plan::Inputs {
    plan::Inputs {
        image,
        canary: args.canary,
        canary_wait: args.canary_wait,
        keep_api_configs: args
            .keep_api_configs
            .unwrap_or(env.keep_api_configs as usize),
        gate: args.slo.gate(args.api_key.clone()),
    }
}

fn lease_options(args: &Args, action: String) -> lease::Options {
    lease::Options {
        break_lease: args.break_lease,
        rollback: args.rollback,
        action,
        journal_dir: args
            .journal_dir
            .clone()
            .unwrap_or_else(|| util::project_root().join("target/deploy-journal")),
    }
}

/// Whether the environment named `name` is production: `prod`, or a name starting with `prod-`.
fn is_production(name: &str) -> bool {
    name == "prod" || name.starts_with("prod-")
}

/// Production only after a confirmation typed on a terminal, or with `--yes`. `Some` is the exit
/// code of a refusal, before anything is built or changed.
fn confirm(args: &Args, env: &Environment) -> anyhow::Result<Option<ExitCode>> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if args.plan || args.yes || !is_production(&env.name) {
        return Ok(None);
    }
    let action = if args.rollback {
        "roll back a deploy of"
    } else {
        "deploy to"
    };
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: {} is production: {action} it after confirming on a terminal, or pass --yes (CI); nothing was changed",
            env.name
        );
        return Ok(Some(ExitCode::from(2)));
    }
    let regions: Vec<&str> = env.regions.iter().map(|r| r.name.as_str()).collect();
    eprint!(
        "{action} {} (project {}, {})? Type {:?} to go on: ",
        env.name,
        env.project_id,
        regions.join(", "),
        env.name
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != env.name {
        eprintln!("not confirmed; nothing was changed");
        return Ok(Some(ExitCode::FAILURE));
    }
    Ok(None)
}

/// `--rollback`: takes the lease (over a holder that died on this host, or an expired one with
/// `--break-lease`) and undoes the journal it left.
async fn rollback(
    args: &Args,
    env: &Environment,
    cloud: &Cloud,
    ui: Ui,
) -> anyhow::Result<ExitCode> {
    let (lease, left) =
        Lease::take(cloud, env, &lease_options(args, "rollback".to_owned()), ui).await?;
    let Some(saved) = left.filter(|s| !s.changes.is_empty()) else {
        lease.release(&[]).await?;
        println!(
            "Nothing to roll back: {} has no journal of an unfinished deploy.",
            env.name
        );
        return Ok(ExitCode::SUCCESS);
    };
    ui.say(&format!(
        "rolling back the deploy of {} (started {}): {} change(s)",
        saved.holder,
        saved
            .started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        saved.changes.len()
    ));
    let mut journal = Journal::resume(saved.changes, lease);
    let rolled = journal.roll_back(cloud, ui).await;
    journal.close(ui).await;
    println!("{rolled}");
    if rolled.failed {
        bail!(
            "the rollback of {} is incomplete: the journal keeps what failed; run --rollback again",
            env.name
        );
    }
    println!("Rolled back {}.", env.name);
    Ok(ExitCode::SUCCESS)
}

/// Why the roll-out stopped early.
enum Stop {
    Failed(Failure),
    Interrupted(Signalled),
}

/// The environment played by `cargo xtask cloud`.
const LOCAL: &str = "local";

/// Points `args` at the running local cloud (its state file): its control plane for both APIs,
/// anonymous clients, its registry, its API key and a token its gateways accept.
fn local_cloud(args: &mut Args, env: &Environment) -> anyhow::Result<crate::cloud::StateFile> {
    let state = crate::cloud::read_state(&env.name)?;
    args.run_endpoint
        .get_or_insert_with(|| state.control_plane.clone());
    args.apigateway_endpoint
        .get_or_insert_with(|| state.control_plane.clone());
    args.anonymous = true;
    args.poll_interval_ms.get_or_insert(100);
    args.repository.get_or_insert_with(|| {
        format!(
            "{}/{}/items/{}",
            state.registry,
            env.project_id,
            util::SERVICE
        )
    });
    args.api_key.get_or_insert_with(|| state.api_key.clone());
    if args.slo.token.is_none() {
        args.slo.token = Some(crate::token::first_provider_token(&env.name)?);
    }
    Ok(state)
}

/// Runs the plan: the roll-out (rolled back on failure or interruption), then pruning; the lease
/// is given up at the end either way.
async fn execute(
    plan: &Plan,
    mut executor: Executor<'_>,
    interrupt: &mut Interrupt,
) -> anyhow::Result<ExitCode> {
    if !plan.changes_anything() {
        println!("{}", plan.nothing_to_do());
        // Before the pruning there are only "unchanged" steps, which report and cannot fail.
        let pruned = tokio::select! {
            pruned = executor.run(&plan.steps) => pruned.err().map(Stop::Failed),
            signal = interrupt.wait() => Some(Stop::Interrupted(signal)),
        };
        executor.finish().await;
        return match pruned {
            None => Ok(ExitCode::SUCCESS),
            Some(Stop::Failed(f)) => Err(f.error.context(format!("step 6 ({}) failed", f.step))),
            Some(Stop::Interrupted(signal)) => {
                eprintln!(
                    "interrupted by {} while pruning; nothing else changes",
                    signal.name()
                );
                Ok(ExitCode::from(signal.exit_code()))
            }
        };
    }
    let (roll_out, prune) = plan.roll_out_and_prune();
    let stopped = tokio::select! {
        done = executor.run(roll_out) => done.err().map(Stop::Failed),
        signal = interrupt.wait() => Some(Stop::Interrupted(signal)),
    };
    match stopped {
        None => {}
        Some(Stop::Failed(failure)) => {
            eprintln!(
                "error: step {} failed in {}: {:#}",
                failure.step, failure.region, failure.error
            );
            let restored = executor.roll_back().await;
            executor.close().await;
            bail!(
                "deploy failed at step {} in {}: {:#}\n{restored}",
                failure.step,
                failure.region,
                failure.error
            )
        }
        Some(Stop::Interrupted(signal)) => {
            eprintln!(
                "interrupted by {}: rolling back what this deploy changed",
                signal.name()
            );
            let restored = executor.roll_back().await;
            executor.close().await;
            eprintln!("{restored}");
            eprintln!("error: deploy interrupted by {}", signal.name());
            return Ok(ExitCode::from(signal.exit_code()));
        }
    }
    let pruned = tokio::select! {
        pruned = executor.run(prune) => pruned.err().map(Stop::Failed),
        signal = interrupt.wait() => Some(Stop::Interrupted(signal)),
    };
    let deployed = plan.deployed(executor.created());
    executor.finish().await;
    match pruned {
        None => {}
        // The roll-out stands; pruning again next time is harmless.
        Some(Stop::Failed(f)) => eprintln!(
            "warning: step 6 ({}) failed: {:#}; the new version is live",
            f.step, f.error
        ),
        Some(Stop::Interrupted(signal)) => {
            eprintln!(
                "interrupted by {} while pruning: the new version is live; pruning stopped",
                signal.name()
            );
            return Ok(ExitCode::from(signal.exit_code()));
        }
    }
    println!("{deployed}");
    Ok(ExitCode::SUCCESS)
}

/// Step 1: the image given, or (unless planning) built and pushed; by digest either way.
async fn image(args: &Args, env: &Environment, ui: Ui) -> anyhow::Result<Image> {
    if let Some(image) = &args.image {
        check_pinned(image)?;
        return Ok(Image::Given(image.clone()));
    }
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
    let target = format!("{repository}:{}", image_tag().await);
    if args.plan {
        return Ok(Image::ToBuild(target));
    }
    ui.say(&format!("step 1: building and pushing {target}"));
    let built = crate::image::build(&crate::image::Args::for_push(target))
        .await
        .context("step 1 (build and push the image) failed")?;
    Ok(Image::Built(built.pushed.context(
        "step 1 (build and push the image): nothing was pushed",
    )?))
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

/// Cloud Run deploys what a tag points to when it resolves it; pinning by digest makes a
/// revision (and a re-run) mean exactly one image.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_be_pinned_by_digest() {
        let hex = "a".repeat(64);
        assert!(check_pinned(&format!("europe-docker.pkg.dev/p/r/i@sha256:{hex}")).is_ok());
        assert!(check_pinned("europe-docker.pkg.dev/p/r/i:latest").is_err());
        assert!(check_pinned("r/i@sha256:abc").is_err());
    }

    #[test]
    fn production_is_prod_and_its_variants() {
        assert!(is_production("prod"));
        assert!(is_production("prod-eu"));
        assert!(!is_production("production-like"));
        assert!(!is_production("stage"));
        assert!(!is_production("local"));
    }
}
