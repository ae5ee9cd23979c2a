//! `cargo xtask cloud`: a local Google Cloud for `cargo xtask deploy --env local`: PostgreSQL
//! standing in for Cloud SQL (a throwaway cluster, as `cargo xtask dev` starts), an OCI registry
//! for Artifact Registry, Cloud Run (the data plane of `items-local-run` behind the control plane
//! of `items-local-cloud`) and one local gateway per region of `deploy/environments/local.toml`.
//!
//! What Terraform creates in the other environments (`deploy/terraform/modules`), this command
//! creates through the control plane: the secrets (the migrator's and the runtime user's database
//! passwords, the page-token key), the database's migrator role (owner of the database and its
//! schema, as the `cloudsql` module's built-in user), the migrate job `items-migrate` as the
//! `cloudrun` module's `migrate.tf` declares it, each region's service from a template like the
//! module's (the `app` container's env, secret volumes, port and startup probe; the invoker is the
//! environment's gateway service account), a first API config and each region's gateway. The job
//! and the first revisions run a bootstrap image (Terraform's `bootstrap_image`): the service built
//! here (debug) and pushed to the local registry. The job runs once before the services are
//! created, so that the runtime user it creates (DML rights only) exists when they start.
//! PostgreSQL checks passwords (SCRAM) for every user but the `postgres` superuser this command
//! and the tests use.
//!
//! It prints `gateway <region>: URL`, `run <region>: URL`, `migrate job: NAME`, `database: URL`,
//! `control plane: URL`, `api key: KEY`,
//! writes `target/local-cloud/<env>.json` for `deploy` and `token`, and on Ctrl-C stops
//! everything and removes what it made. `XTASK_LOCAL_CLOUD_DIR` moves `target/local-cloud` (for
//! `cloud`, `deploy`, `rotate` alike): the end-to-end tests run one local cloud each, side by side.

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

/// The variable naming the directory of the local clouds' state (default `target/local-cloud`).
pub(crate) const DIR_VAR: &str = "XTASK_LOCAL_CLOUD_DIR";

/// `target/local-cloud`, or the directory `XTASK_LOCAL_CLOUD_DIR` names.
fn state_dir() -> PathBuf {
    std::env::var_os(DIR_VAR)
        .filter(|d| !d.is_empty())
        .map_or_else(
            || util::project_root().join("target/local-cloud"),
            PathBuf::from,
        )
}

/// `<state dir>/<env>.json`.
pub(crate) fn state_file(env: &str) -> PathBuf {
    state_dir().join(format!("{env}.json"))
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
    let work = state_dir().join(&env.name);
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

    // Secret Manager, as the cloudsql and cloudrun modules' secrets (their default names).
    let secret = |name: &str| format!("projects/{}/secrets/{}-{name}", env.project_id, env.service);
    let secrets = Secrets {
        migrator: secret("db-password"),
        runtime: secret("db-runtime-password"),
        page_token: secret("page-token-key"),
    };
    let migrator_password = random_hex(24)?;
    cloud.add_secret_version(&secrets.migrator, migrator_password.as_bytes());
    cloud.add_secret_version(&secrets.runtime, random_hex(24)?.as_bytes());
    cloud.add_secret_version(&secrets.page_token, random_hex(32)?.as_bytes());
    database_roles(cluster, &migrator_password).await?;

    // The migrate job (migrate.tf), in the first region, run once now: it applies the
    // migrations and creates the runtime user.
    let first_region = env
        .regions
        .first()
        .context("the environment has no region")?;
    let job = format!(
        "projects/{}/locations/{}/jobs/{}-migrate",
        env.project_id, first_region.name, env.service
    );
    cloud.create_job(&job, migrate_job(env, &bootstrap, cluster.port(), &secrets))?;
    cloud
        .run_job(&job)
        .await
        .map_err(|message| anyhow::anyhow!("the first run of {job} failed: {message}"))?;

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
        let template = template(env, &bootstrap, cluster.port(), &secrets);
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
    lines.push(format!("migrate job: {job}"));
    lines.push(format!(
        "database: {} (superuser; the services connect as {RUNTIME_USER})",
        cluster.url(DATABASE)
    ));
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

/// The database roles of `deploy/terraform/modules/cloudsql`.
const DATABASE: &str = "items";
/// The built-in user that owns the schema (the module's `user_name`).
const MIGRATOR: &str = "items";
/// The runtime user the migrate job creates (the module's `runtime_user_name`).
const RUNTIME_USER: &str = "items_runtime";

/// The secrets (full names) of the database passwords and the page-token key.
#[derive(Debug)]
struct Secrets {
    migrator: String,
    runtime: String,
    page_token: String,
}

/// `n` random bytes from the system, hex-encoded.
fn random_hex(n: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The migrator role (LOGIN, CREATEROLE: it creates the runtime user) owning the database and
/// its `public` schema, as Cloud SQL's built-in user of the `cloudsql` module (Cloud SQL gives
/// users it creates CREATEROLE and CREATEDB, "About PostgreSQL users"); then password
/// authentication (SCRAM) for every user but `postgres` on loopback.
async fn database_roles(cluster: &PgCluster, migrator_password: &str) -> anyhow::Result<()> {
    async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to the local PostgreSQL")?;
        let conn = tokio::spawn(connection);
        let result = client.batch_execute(sql).await;
        drop(client);
        let _ = conn.await;
        result.with_context(|| {
            format!(
                "running {}",
                sql.split(' ').take(3).collect::<Vec<_>>().join(" ")
            )
        })
    }
    // The password is hex: nothing to quote.
    let admin = cluster.url("postgres");
    execute(
        &admin,
        &format!("CREATE ROLE {MIGRATOR} WITH LOGIN CREATEROLE PASSWORD '{migrator_password}'"),
    )
    .await?;
    // CREATE DATABASE cannot share an implicit transaction with another statement.
    execute(
        &admin,
        &format!("CREATE DATABASE {DATABASE} OWNER {MIGRATOR}"),
    )
    .await?;
    execute(
        &cluster.url(DATABASE),
        &format!("ALTER SCHEMA public OWNER TO {MIGRATOR};"),
    )
    .await?;
    let hba = cluster.data_dir().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "# cargo xtask cloud: the superuser without a password (tools, tests), every other user \
         with its password\n\
         local all postgres trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         local all all scram-sha-256\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1/128 scram-sha-256\n",
    )
    .with_context(|| format!("writing {}", hba.display()))?;
    execute(&admin, "SELECT pg_reload_conf();").await
}

/// The migrate job's `ExecutionTemplate` as `deploy/terraform/modules/cloudrun/migrate.tf`
/// declares it, on this machine: `items-service migrate` (the image's entrypoint with `args:
/// [migrate]`) as the migrator, the runtime user and its password to set, the page-token key,
/// one task, one retry, 1800 s. The database is reached over loopback (no Cloud SQL volume).
fn migrate_job(
    env: &Environment,
    image: &str,
    pg_port: u16,
    secrets: &Secrets,
) -> serde_json::Value {
    let env_vars = [
        ("APP_ENVIRONMENT", "local".to_owned()),
        ("APP__DATABASE__HOST", "127.0.0.1".to_owned()),
        ("APP__DATABASE__PORT", pg_port.to_string()),
        ("APP__DATABASE__USER", MIGRATOR.to_owned()),
        ("APP__DATABASE__DBNAME", DATABASE.to_owned()),
        (
            "APP__DATABASE__PASSWORD_FILE",
            "/secrets/db-password".to_owned(),
        ),
        ("APP__DATABASE__RUNTIME_USER", RUNTIME_USER.to_owned()),
        (
            "APP__DATABASE__RUNTIME_PASSWORD_FILE",
            "/runtime-password/db-password".to_owned(),
        ),
        (
            "APP__API__PAGE_TOKEN_SECRET_FILE",
            "/page-token/current".to_owned(),
        ),
        ("APP__TELEMETRY__EXPORTER", "none".to_owned()),
    ];
    let volume = |name: &str, secret: &str, path: &str| {
        json!({"name": name, "secret": {"secret": secret,
            "items": [{"version": "latest", "path": path}]}})
    };
    json!({
        "taskCount": 1,
        "template": {
            "serviceAccount": format!("{}-migrate@{}.iam.gserviceaccount.com", env.service, env.project_id),
            "timeout": "1800s",
            "maxRetries": 1,
            "containers": [{
                "image": image,
                "args": ["migrate"],
                "env": env_vars.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "volumeMounts": [
                    {"name": "migrator-password", "mountPath": "/secrets"},
                    {"name": "runtime-password", "mountPath": "/runtime-password"},
                    {"name": "page-token", "mountPath": "/page-token"}
                ]
            }],
            "volumes": [
                volume("migrator-password", &secrets.migrator, "db-password"),
                volume("runtime-password", &secrets.runtime, "db-password"),
                volume("page-token", &secrets.page_token, "current")
            ]
        }
    })
}

/// The `app` container as deploy/terraform/modules/cloudrun creates it, on this machine: the
/// database over loopback as the runtime user (no migration at start-up: it may not run DDL),
/// its password from a secret volume at /secrets/db-password (`latest`), the page-token key's
/// version 1 pinned at /page-token/current (as Terraform's `page_token_signing_key_version`;
/// `cargo xtask rotate page-token` moves it), port 8080 and the startup probe on /health/ready. The
/// collector sidecar and the Cloud SQL volume are left out.
fn template(env: &Environment, image: &str, pg_port: u16, secrets: &Secrets) -> serde_json::Value {
    let env_vars = [
        ("APP_ENVIRONMENT", "local".to_owned()),
        ("APP__DATABASE__HOST", "127.0.0.1".to_owned()),
        ("APP__DATABASE__PORT", pg_port.to_string()),
        ("APP__DATABASE__USER", RUNTIME_USER.to_owned()),
        ("APP__DATABASE__DBNAME", DATABASE.to_owned()),
        (
            "APP__DATABASE__PASSWORD_FILE",
            "/secrets/db-password".to_owned(),
        ),
        ("APP__DATABASE__MIGRATE_ON_START", "false".to_owned()),
        (
            "APP__API__PAGE_TOKEN_SECRET_FILE",
            "/page-token/current".to_owned(),
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
            "volumeMounts": [
                {"name": "db-password", "mountPath": "/secrets"},
                {"name": "page-token", "mountPath": "/page-token"}
            ],
            "startupProbe": {
                "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 1,
                "failureThreshold": 60,
                "httpGet": {"path": "/health/ready", "port": 8080}
            }
        }],
        "volumes": [
            {"name": "db-password", "secret": {
                "secret": secrets.runtime,
                "items": [{"version": "latest", "path": "db-password"}]
            }},
            {"name": "page-token", "secret": {
                "secret": secrets.page_token,
                "items": [{"version": "1", "path": "current"}]
            }}
        ]
    })
}
