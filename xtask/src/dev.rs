//! `cargo xtask dev`: the service on http://127.0.0.1:8080 with a database of its own; with
//! `--gateway`, the local API Gateway on that port, enforcing the environment's rendered config in
//! front of the service on a free port.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use items_testkit::{ClusterOptions, PgCluster, ServiceLaunch, redact};

use items_local_gateway::{GatewayConfig, LOCAL_API_KEY, LocalGateway};

use crate::token;
use crate::util::{self, Forward, SERVICE, Signals};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port to serve on (127.0.0.1): the service's, or with --gateway the gateway's.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Put the local API Gateway in front: it enforces openapi/gateway/<env>-<region>.yaml.
    #[arg(long)]
    gateway: bool,
    /// With --gateway: the environment whose rendered config the gateway loads.
    #[arg(long, default_value = "dev", requires = "gateway")]
    env: String,
    /// With --gateway: the region of that config (default: the environment's first).
    #[arg(long, requires = "gateway")]
    region: Option<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Handle Ctrl-C from here on, so that a cluster started below is always removed.
    let mut signals = Signals::install()?;
    let binary = util::build_service(false).await?;

    // With --gateway the gateway takes --port (bound first, so a busy port fails early) and the
    // service a free port.
    let (addr, gateway) = if args.gateway {
        let service = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
        let gateway = start_gateway(&args.env, args.region.as_deref(), listen, service).await?;
        (service, Some(gateway))
    } else {
        (SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)), None)
    };

    let (database_url, cluster) = match util::database_url_from_env() {
        Some(url) => (url, None),
        None => {
            eprintln!("xtask: starting a throwaway PostgreSQL cluster (DATABASE_URL is not set)");
            let cluster = PgCluster::start(&ClusterOptions::default())?;
            let url = items_testkit::create_database(&cluster.url("postgres"), "items").await?;
            eprintln!(
                "xtask: PostgreSQL on 127.0.0.1:{} in {}",
                cluster.port(),
                cluster.data_dir().display()
            );
            (url, Some(cluster))
        }
    };

    let mut cmd = launch(&binary, &database_url, addr).command();
    let throwaway = cluster.is_some();
    let banner = async {
        // The service migrates at start-up; give it time on a cold cluster.
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while util::http_status(addr, items_http::HEALTH_READY).await.ok() != Some(200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        if ready.await.is_ok() {
            match &gateway {
                Some((gateway, env)) => print_gateway_banner(gateway, addr, env, throwaway),
                None => print_banner(addr, &database_url, throwaway),
            }
        }
        std::future::pending::<()>().await;
    };
    let status = tokio::select! {
        status = util::supervise(&mut cmd, &mut signals, Forward::All, Duration::from_secs(15)) => status,
        () = banner => unreachable!("the banner future never ends"),
    };
    if let Some((gateway, _)) = gateway {
        gateway.stop().await;
    }
    if let Some(mut cluster) = cluster {
        cluster.stop();
        eprintln!("xtask: removed the throwaway PostgreSQL cluster");
    }
    let status = status.with_context(|| format!("running {SERVICE}"))?;
    Ok(util::exit_code(status))
}

/// What the gateway banner names.
pub(crate) struct GatewayEnv {
    env: String,
    region: String,
    file: String,
}

/// Starts the local gateway on `listen` with the rendered config of `env` in `region` (default:
/// its first), in front of the service at `service`. Also the hook for load tests through the
/// gateway.
pub(crate) async fn start_gateway(
    env: &str,
    region: Option<&str>,
    listen: SocketAddr,
    service: SocketAddr,
) -> anyhow::Result<(LocalGateway, GatewayEnv)> {
    let (environment, region, file, _) = token::load_config(env, region)?;
    let yaml = std::fs::read_to_string(&file)?;
    let mut config = GatewayConfig::new(&file, format!("http://{service}"));
    config.listen = listen;
    config.gateway_service_account = environment.gateway_service_account.clone();
    config.producer_project = environment.project_id.clone();
    config.config_id = items_gateway_spec::config_id(&environment.api_id, &environment.name, &yaml);
    let gateway = LocalGateway::start(config)
        .await
        .with_context(|| format!("starting the local gateway on {listen}"))?;
    let env = GatewayEnv {
        env: env.to_owned(),
        region,
        file: file
            .strip_prefix(util::project_root())
            .unwrap_or(&file)
            .display()
            .to_string(),
    };
    Ok((gateway, env))
}

/// The service as `dev` runs it: local settings on `database_url`, listening on `addr`, with
/// readable logs unless the user's environment (which the service inherits) chooses otherwise.
fn launch(binary: &Path, database_url: &str, addr: SocketAddr) -> ServiceLaunch {
    util::service(binary)
        .environment("local")
        .database_url(database_url)
        .listen(addr)
        .user_overridable(|defaults| defaults.log_format("pretty"))
}

fn print_banner(addr: SocketAddr, database_url: &str, throwaway: bool) {
    let base = format!("http://{addr}");
    println!();
    println!(
        "  items service: {base}   (database {})",
        redact(database_url)
    );
    println!("  API reference: {base}/docs");
    println!("  try:");
    println!(
        "    curl -i -X POST {base}/items -H 'Content-Type: application/json' \\\n         -d '{{\"name\": \"first item\", \"description\": \"hello\"}}'"
    );
    println!("    curl -s '{base}/items?page_size=10'");
    if throwaway {
        println!("  Ctrl-C stops the service and removes the throwaway cluster.");
    } else {
        println!("  Ctrl-C stops the service.");
    }
    println!();
}

/// The lines `dev --gateway` prints once the service is ready; the curl example works as printed
/// (the token command runs in a subshell).
fn gateway_banner(gateway: &str, service: SocketAddr, env: &GatewayEnv, throwaway: bool) -> String {
    let token_cmd = if env.env == "dev" {
        "cargo xtask token".to_owned()
    } else {
        format!("cargo xtask token --env {}", env.env)
    };
    let stop = if throwaway {
        "Ctrl-C stops the gateway and the service and removes the throwaway cluster."
    } else {
        "Ctrl-C stops the gateway and the service."
    };
    format!(
        "\n\
         gateway: {gateway}\n\
         service: http://{service}\n\
         api key: {LOCAL_API_KEY}\n\
         token:   {token_cmd}\n\
         config:  {file} ({env} {region}; API Gateway's rules, local keys and issuer)\n\
         try:\n\
         \x20 curl -s \"{gateway}/items?key={LOCAL_API_KEY}\" -H \"Authorization: Bearer $({token_cmd})\"\n\
         \x20 curl -s -X POST \"{gateway}/items?key={LOCAL_API_KEY}\" -H \"Authorization: Bearer $({token_cmd})\" \\\n\
         \x20      -H 'Content-Type: application/json' -d '{{\"name\": \"first item\"}}'\n\
         {stop}\n",
        file = env.file,
        env = env.env,
        region = env.region,
    )
}

fn print_gateway_banner(
    gateway: &LocalGateway,
    service: SocketAddr,
    env: &GatewayEnv,
    throwaway: bool,
) {
    println!(
        "{}",
        gateway_banner(&gateway.url(), service, env, throwaway)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_banner_names_gateway_service_key_and_token_command() {
        let env = GatewayEnv {
            env: "dev".into(),
            region: "europe-west1".into(),
            file: "openapi/gateway/dev-europe-west1.yaml".into(),
        };
        let service = SocketAddr::from((Ipv4Addr::LOCALHOST, 41234));
        let banner = gateway_banner("http://127.0.0.1:8080", service, &env, true);
        let lines: Vec<&str> = banner.lines().collect();
        assert!(
            lines.contains(&"gateway: http://127.0.0.1:8080"),
            "{banner}"
        );
        assert!(
            lines.contains(&"service: http://127.0.0.1:41234"),
            "{banner}"
        );
        assert!(lines.contains(&"api key: local-dev-api-key"), "{banner}");
        assert!(lines.contains(&"token:   cargo xtask token"), "{banner}");
        assert!(banner.contains(
            "curl -s \"http://127.0.0.1:8080/items?key=local-dev-api-key\" -H \"Authorization: Bearer $(cargo xtask token)\""
        ), "{banner}");
    }

    #[test]
    fn a_variable_the_user_set_wins_over_dev_defaults() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        let launch = launch(Path::new("items-service"), "postgres://h/items", addr);
        let none = launch.vars_given(|_| false);
        assert!(none.contains(&("APP__LOG__FORMAT", "pretty")), "{none:?}");
        let user_json = launch.vars_given(|k| k == "APP__LOG__FORMAT");
        assert!(
            user_json.iter().all(|(k, _)| *k != "APP__LOG__FORMAT"),
            "dev must not override the user's APP__LOG__FORMAT"
        );
        // dev's own choices stay whatever the user has.
        for (key, value) in [
            ("APP_ENVIRONMENT", "local"),
            ("APP__DATABASE__URL", "postgres://h/items"),
            ("APP__SERVER__HOST", "127.0.0.1"),
            ("APP__SERVER__PORT", "8080"),
        ] {
            assert!(launch.vars_given(|_| true).contains(&(key, value)), "{key}");
        }
    }
}
