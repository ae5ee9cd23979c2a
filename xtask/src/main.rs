//! `cargo xtask <command>`: the project's automation, one module per command.
//!
//! xtask is the only place in the workspace that shells out (cargo, the service binary, wrk,
//! PostgreSQL's tools through `items-testkit`). A new command is a new module with an `Args`
//! struct and a `run` function, plus one variant in [`Command`].

mod bench;
mod cloud;
mod deploy;
mod dev;
mod failover;
mod image;
mod lint;
mod loadtest;
mod migrate;
mod oci;
mod render;
mod rotate;
mod test;
mod tidy;
mod token;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the items service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service on http://127.0.0.1:8080 against a throwaway PostgreSQL (or DATABASE_URL);
    /// --gateway puts the local API Gateway in front of it.
    Dev(dev::Args),
    /// Print a JWT the local gateway accepts (the config's issuer and audience, local issuer key).
    Token(token::Args),
    /// Run every test (nextest + doc tests) against a throwaway PostgreSQL (or DATABASE_URL).
    Test(test::Args),
    /// Apply the service's embedded migrations to DATABASE_URL.
    Migrate(migrate::Args),
    /// Load-test the release binary on loopback with wrk and report throughput, latency and RSS.
    Bench(bench::Args),
    /// Drive GET one item, GET a page and POST against any base URL (gateway or service) with wrk;
    /// report requests/s, p50/p95/p99 and errors per endpoint; exit 1 when an SLO is missed.
    Loadtest(loadtest::Args),
    /// Static checks no compiler makes: `lint terraform` checks deploy/terraform against its
    /// modules, deploy/environments and the IAM and secret rules (exit 1 on a problem).
    Lint(lint::Args),
    /// Render openapi/items.openapi.json and the API Gateway configs in openapi/gateway/ (--check: fail on drift).
    Render(render::Args),
    /// Check the repository's text: named paths exist, nothing points outside it, every module has
    /// a `//!` line, every command is in docs/tooling.md, deploy/facts.toml agrees everywhere.
    Tidy(tidy::Args),
    /// Build the service's OCI image without a container engine (and push it with --push).
    Image(image::Args),
    /// Roll the service out to Cloud Run and API Gateway in every region of an environment.
    Deploy(deploy::Args),
    /// Rotate a secret without failing requests: `rotate page-token --env E [--phase add|sign|retire]`,
    /// `rotate db-password --env E`.
    Rotate(rotate::Args),
    /// Run the local cloud `deploy --env local` deploys to: PostgreSQL, an OCI registry, Cloud
    /// Run (each revision run from its image) and one local API Gateway per region.
    Cloud(cloud::Args),
    /// The failover runbook's API steps: drain or restore a region in the global load balancer,
    /// promote the cross-region Cloud SQL replica (docs/deploy.md, "Failover runbook").
    Failover(failover::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Token(args) => token::run(args).await,
            Command::Test(args) => test::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Loadtest(args) => loadtest::run(args).await,
            Command::Lint(args) => lint::run(args).await,
            Command::Render(args) => render::run(args).await,
            Command::Tidy(args) => tidy::run(args).await,
            Command::Image(args) => image::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Cloud(args) => cloud::run(args).await,
            Command::Rotate(args) => rotate::run(args).await,
            Command::Failover(args) => failover::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
