//! `cargo xtask test [-- <nextest args>]`: every test of the workspace against a real PostgreSQL.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use items_testkit::{ClusterOptions, PgCluster, redact};

use crate::util::{self, Forward, Signals};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Skip the doc tests (`cargo test --doc`).
    #[arg(long)]
    no_doc: bool,
    /// Passed on to `cargo nextest run` (or `cargo test` without nextest), after `--`.
    #[arg(last = true)]
    extra: Vec<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Ctrl-C reaches cargo/nextest directly (same process group); we wait for them and clean up.
    let mut signals = Signals::install()?;

    let mut cluster = None;
    let database_url = match util::database_url_from_env() {
        Some(url) => {
            eprintln!("xtask: testing against DATABASE_URL={}", redact(&url));
            url
        }
        None => {
            let c = PgCluster::start(&ClusterOptions {
                fast_unsafe: true,
                ..ClusterOptions::default()
            })?;
            let url = c.url("postgres");
            eprintln!(
                "xtask: testing against a throwaway PostgreSQL cluster on 127.0.0.1:{} ({})",
                c.port(),
                c.data_dir().display()
            );
            cluster = Some(c);
            url
        }
    };

    let nextest = has_nextest().await;
    let mut runs = Vec::new();
    if nextest {
        runs.push(
            ["nextest", "run", "--workspace"]
                .into_iter()
                .map(String::from)
                .chain(args.extra.iter().cloned())
                .collect::<Vec<_>>(),
        );
        if !args.no_doc {
            runs.push(["test", "--doc", "--workspace"].map(String::from).to_vec());
        }
    } else {
        eprintln!(
            "xtask: note: cargo-nextest is not installed, falling back to `cargo test` \
             (install it with `cargo install --locked cargo-nextest`)"
        );
        let mut run: Vec<String> = ["test", "--workspace"].map(String::from).to_vec();
        if args.no_doc {
            run.extend(["--lib", "--bins", "--tests"].map(String::from));
        }
        if !args.extra.is_empty() {
            run.push("--".into());
            run.extend(args.extra.iter().cloned());
        }
        runs.push(run);
    }

    let mut code = ExitCode::SUCCESS;
    for run in runs {
        eprintln!("xtask: cargo {}", run.join(" "));
        let mut cmd = util::cargo();
        cmd.args(&run).env("DATABASE_URL", &database_url);
        let status = util::supervise(
            &mut cmd,
            &mut signals,
            Forward::AllButInterrupt,
            Duration::from_secs(30),
        )
        .await;
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                code = util::exit_code(status);
                break;
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::FAILURE;
                break;
            }
        }
    }
    if let Some(mut c) = cluster {
        c.stop();
    }
    Ok(code)
}

async fn has_nextest() -> bool {
    util::cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}
