//! `cargo xtask cloud`: a local Google Cloud for `cargo xtask deploy --env local`: PostgreSQL
//! standing in for Cloud SQL (a throwaway cluster, as `cargo xtask dev` starts), an OCI registry
//! for Artifact Registry, Cloud Run (the data plane of `items-local-run` behind the control plane
//! of `items-local-cloud`) and one local gateway per region of `deploy/environments/local.toml`.
//!
//! What Terraform creates in the other environments (`deploy/terraform/modules`), this command
//! creates through the control plane: the secrets, each region's service from a template like the
//! `cloudrun` module's (the `app` container's env, secret volume, port and startup probe; the
//! invoker is the environment's gateway service account), a first API config and each region's
//! gateway. The first revision runs a bootstrap image (Terraform's `bootstrap_image`): the service
//! built here (debug) and pushed to the local registry.
//!
//! It prints `gateway <region>: URL`, `run <region>: URL`, `control plane: URL`, `api key: KEY`,
//! writes `target/local-cloud/<env>.json` for `deploy` and `token`, and on Ctrl-C stops
//! everything and removes what it made.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use items_gateway_spec::Environment;
use items_local_cloud::{Iam, LocalCloud, LocalGateways, Registry};
use items_local_gateway::LOCAL_API_KEY;
use items_local_run::{InstanceLog, Runtime, RuntimeOptions};
use items_testkit::{ClusterOptions, PgCluster};
use serde_json::json;

use crate::util::{self, Signals};

/// The account `cargo xtask deploy --env local` checks tagged URLs as (an invoker of each
/// service: the deploy's tagged-URL check calls the service with its ID token).
pub(crate) const DEPLOYER: &str = "deployer@local.iam.gserviceaccount.com";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The environment (a file stem of deploy/environments).
    #[arg(long, default_value = "local")]
    env: String,
    /// The service binary of the bootstrap image (default: a debug build of items-service).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
}

/// What `deploy` and `token` read to find the running local cloud.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StateFile {
    pub(crate) control_plane: String,
    pub(crate) registry: String,
    pub(crate) api_key: String,
    pub(crate) deployer: String,
}

/// `target/local-cloud/<env>.json`.
pub(crate) fn state_file(env: &str) -> PathBuf {
    util::project_root()
        .join("target/local-cloud")
        .join(format!("{env}.json"))
}

/// The running local cloud of `env`, if `cargo xtask cloud` wrote its state file.
pub(crate) fn read_state(env: &str) -> anyhow::Result<StateFile> {
    let path = state_file(env);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} does not exist: start the local cloud with `cargo xtask cloud --env {env}`",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install()?;
    let root = util::project_root();
    let env = Environment::load(&root.join(format!("deploy/environments/{}.toml", args.env)))
        .with_context(|| format!("environment {}", args.env))?;
    let work = root.join("target/local-cloud").join(&env.name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let mut cluster = PgCluster::start(&ClusterOptions::default())?;
    let started = start(&args, &env, &work, &cluster).await;
    let (cloud, runtime, gateways) = match started {
        Ok(parts) => parts,
        Err(e) => {
            cluster.stop();
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let signal = signals.recv().await;
    eprintln!("xtask: {signal}: stopping the local cloud");
    gateways.stop().await;
    runtime.shutdown().await;
    cluster.stop();
    let _ = std::fs::remove_file(state_file(&env.name));
    let _ = std::fs::remove_dir_all(&work);
    drop(cloud);
    eprintln!("xtask: the local cloud is stopped and removed");
    Ok(ExitCode::SUCCESS)
}

async fn start(
    args: &Args,
    env: &Environment,
    work: &std::path::Path,
    cluster: &PgCluster,
) -> anyhow::Result<(LocalCloud, Runtime, Arc<LocalGateways>)> {
    items_testkit::create_database(&cluster.url("postgres"), "items").await?;
    let registry = Registry::start(0)?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => util::build_service(false).await?,
    };
    let repository = format!(
        "{}/{}/items/{}",
        registry.host(),
        env.project_id,
        util::SERVICE
    );
    let mut image_args = crate::image::Args::for_push(format!("{repository}:bootstrap"));
    image_args.binary = Some(binary);
    image_args.output = Some(work.join("bootstrap-image"));
    let bootstrap = crate::image::build(&image_args)
        .await?
        .pushed
        .context("the bootstrap image was not pushed")?;

    let mut options = RuntimeOptions::new(work.join("run"));
    options.instance_log = InstanceLog::Stdout;
    let runtime = Runtime::start(options).await?;
    let gateways = Arc::new(LocalGateways::new(
        work.join("gateways"),
        &env.gateway_service_account,
        vec![LOCAL_API_KEY.to_owned()],
    ));
    let cloud = LocalCloud::start_with(
        Arc::new(runtime.clone()),
        gateways.clone(),
        ("127.0.0.1", 0),
        0,
    )?;

    // Secret Manager, as the cloudrun module's secrets (the password is not checked: the
    // throwaway cluster trusts loopback).
    let password = format!(
        "projects/{}/secrets/{}-db-password",
        env.project_id, env.service
    );
    cloud.add_secret_version(&password, b"local-password");

    let mut lines = Vec::new();
    for region in &env.regions {
        let name = format!(
            "projects/{}/locations/{}/services/{}",
            env.project_id, region.name, env.service
        );
        let iam = Iam {
            invokers: vec![
                format!("serviceAccount:{}", env.gateway_service_account),
                format!("serviceAccount:{DEPLOYER}"),
            ],
            // The backend URL the gateway configs name: the service's deterministic URL, which
            // is one of its URLs on Cloud Run and only a custom audience here.
            custom_audiences: vec![region.backend_url.clone()],
            allow_unauthenticated: false,
        };
        let template = template(env, &bootstrap, cluster.port(), &password);
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let url = cloud
            .create_service(&name, template, listen, iam)
            .await
            .with_context(|| format!("creating {name}"))?;
        gateways.set_backend(&region.name, &url);
        lines.push(format!("run {}: {url}", region.name));
    }
    let api = format!(
        "projects/{}/locations/global/apis/{}",
        env.project_id, env.api_id
    );
    let mut gateway_lines = Vec::new();
    for region in &env.regions {
        let file = items_local_gateway::config_file(&util::project_root(), &env.name, &region.name);
        let yaml = std::fs::read(&file).with_context(|| {
            format!("reading {} (cargo xtask render writes it)", file.display())
        })?;
        let id =
            items_gateway_spec::config_id(&env.api_id, &env.name, &String::from_utf8_lossy(&yaml));
        let config = format!("{api}/configs/{id}");
        let file_name = file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        cloud.create_config(&config, &file_name, &yaml, &env.gateway_service_account);
        let gateway = format!(
            "projects/{}/locations/{}/gateways/{}",
            env.project_id, region.name, region.gateway_id
        );
        let url = cloud.create_gateway(&gateway, &config).await?;
        gateway_lines.push(format!("gateway {}: {url}", region.name));
    }
    gateway_lines.append(&mut lines);
    let mut lines = gateway_lines;
    lines.push(format!("control plane: {}", cloud.url()));
    lines.push(format!("api key: {LOCAL_API_KEY}"));
    let state = StateFile {
        control_plane: cloud.url(),
        registry: registry.host(),
        api_key: LOCAL_API_KEY.to_owned(),
        deployer: DEPLOYER.to_owned(),
    };
    std::fs::write(state_file(&env.name), serde_json::to_vec_pretty(&state)?)?;
    for line in lines {
        println!("{line}");
    }
    eprintln!(
        "xtask: deploy with `cargo xtask deploy --env {}`; Ctrl-C stops everything",
        env.name
    );
    // The registry lives as long as its thread; the handle is not needed to keep it.
    drop(registry);
    Ok((cloud, runtime, gateways))
}

/// The `app` container as deploy/terraform/modules/cloudrun creates it, on this machine: the
/// database over loopback, its password from a secret volume at /secrets/db-password, port 8080
/// and the startup probe on /health/ready. The collector sidecar, the Cloud SQL volume and the
/// page-token key volume are left out (the `local` settings carry a development key).
fn template(env: &Environment, image: &str, pg_port: u16, password: &str) -> serde_json::Value {
    let env_vars = [
        ("APP_ENVIRONMENT", "local".to_owned()),
        ("APP__DATABASE__HOST", "127.0.0.1".to_owned()),
        ("APP__DATABASE__PORT", pg_port.to_string()),
        ("APP__DATABASE__USER", "postgres".to_owned()),
        ("APP__DATABASE__DBNAME", "items".to_owned()),
        (
            "APP__DATABASE__PASSWORD_FILE",
            "/secrets/db-password".to_owned(),
        ),
        ("APP__TELEMETRY__EXPORTER", "none".to_owned()),
    ];
    json!({
        "serviceAccount": format!("{}-runtime@{}.iam.gserviceaccount.com", env.service, env.project_id),
        "maxInstanceRequestConcurrency": 80,
        "containers": [{
            "name": "app",
            "image": image,
            "ports": [{"containerPort": 8080}],
            "env": env_vars.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "volumeMounts": [{"name": "db-password", "mountPath": "/secrets"}],
            "startupProbe": {
                "initialDelaySeconds": 0, "periodSeconds": 2, "timeoutSeconds": 1,
                "failureThreshold": 30,
                "httpGet": {"path": "/health/ready", "port": 8080}
            }
        }],
        "volumes": [{"name": "db-password", "secret": {
            "secret": password,
            "items": [{"version": "latest", "path": "db-password"}]
        }}]
    })
}
