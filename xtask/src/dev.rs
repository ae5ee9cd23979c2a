//! `cargo xtask dev`: the service on http://127.0.0.1:8080 with a database of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use items_testkit::{ClusterOptions, PgCluster, redact};

use crate::util::{self, Forward, SERVICE, Signals};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port to serve on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Handle Ctrl-C from here on, so that a cluster started below is always removed.
    let mut signals = Signals::install()?;
    let binary = util::build_service(false).await?;

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

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.current_dir(util::project_root())
        .env("APP_ENVIRONMENT", "local")
        .env("APP__DATABASE__URL", &database_url)
        .env("APP__SERVER__HOST", addr.ip().to_string())
        .env("APP__SERVER__PORT", addr.port().to_string())
        .env("APP__LOG__FORMAT", "pretty")
        .env_remove("PORT");

    let throwaway = cluster.is_some();
    let banner = async {
        // The service migrates at start-up; give it time on a cold cluster.
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while util::http_status(addr, "/readyz").await.ok() != Some(200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        if ready.await.is_ok() {
            print_banner(addr, &database_url, throwaway);
        }
        std::future::pending::<()>().await;
    };
    let status = tokio::select! {
        status = util::supervise(&mut cmd, &mut signals, Forward::All, Duration::from_secs(15)) => status,
        () = banner => unreachable!("the banner future never ends"),
    };
    if let Some(mut cluster) = cluster {
        cluster.stop();
        eprintln!("xtask: removed the throwaway PostgreSQL cluster");
    }
    let status = status.with_context(|| format!("running {SERVICE}"))?;
    Ok(util::exit_code(status))
}

fn print_banner(addr: SocketAddr, database_url: &str, throwaway: bool) {
    let base = format!("http://{addr}");
    println!();
    println!(
        "  items service: {base}   (database {})",
        redact(database_url)
    );
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
