//! `cargo xtask migrate`: `items-service migrate` against `DATABASE_URL`; with
//! `--snapshot-statements`, the release-time snapshot of the store's SQL statements.

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
    /// Instead of migrating: write every SQL statement of this release to the fixture the next
    /// release prepares against its own schema (crates/repository/tests/fixtures/); run it when
    /// cutting a release and commit the file.
    #[arg(long)]
    snapshot_statements: bool,
}

/// The fixture's text: a header, then `NAME<TAB>statement` per line.
pub(crate) fn statements_snapshot() -> anyhow::Result<String> {
    let mut out = format!(
        "# The SQL statements of items-repository {}, written by `cargo xtask migrate \
         --snapshot-statements`\n# at release time. tests/schema.rs prepares each against the \
         next release's schema.\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, text) in items_repository::statements() {
        anyhow::ensure!(
            !text.contains(['\n', '\t']),
            "statement {name} spans lines or holds a tab; the fixture keeps one per line"
        );
        out.push_str(&format!("{name}\t{text}\n"));
    }
    Ok(out)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.snapshot_statements {
        let path = util::project_root()
            .join("crates/repository")
            .join(items_repository::STATEMENTS_FIXTURE);
        std::fs::write(&path, statements_snapshot()?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("xtask: wrote {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
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
