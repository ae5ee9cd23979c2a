//! `cargo xtask migrate`: `items-service migrate` against `DATABASE_URL`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use items_testkit::redact;

use crate::util::{self, Forward, SERVICE, Signals};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The database to migrate (required).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let database_url = args.database_url.filter(|u| !u.is_empty()).context(
        "DATABASE_URL is not set: set it (or pass --database-url) to the database to migrate, \
         e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/items cargo xtask migrate",
    )?;
    let mut signals = Signals::install()?;
    let binary = util::build_service(false).await?;
    eprintln!("xtask: migrating {}", redact(&database_url));
    let mut cmd = util::service(&binary)
        .arg("migrate")
        .database_url(&database_url)
        .user_overridable(|defaults| defaults.environment("local"))
        .command();
    let status = util::supervise(
        &mut cmd,
        &mut signals,
        Forward::All,
        Duration::from_secs(15),
    )
    .await
    .with_context(|| format!("running {SERVICE} migrate"))?;
    Ok(util::exit_code(status))
}
