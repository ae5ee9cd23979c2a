//! `cargo xtask <command>`: the project's development automation, one module per command.
//!
//! xtask and `xtask-release` (xtask/release/, `cargo ship`) are the only places in the workspace
//! that shell out (cargo, the service binary, wrk, PostgreSQL's tools through `items-testkit`).
//! This crate is the everyday half: `dev`, `token`, `test`, `migrate`, `bench`, `loadtest`,
//! `tidy`, and none of the libraries only a release needs (Google's clients, OCI, HCL, code
//! generation), so that a first `cargo xtask dev` does not build them. The release commands
//! (`release::COMMANDS`) are `xtask-release`'s; `cargo xtask deploy …` hands them to it.
//! It is also a library: `xtask-release` uses its shared helpers (`util`), `loadtest`, `tidy`'s
//! facts and `token`, and never the other way round.
//!
//! A new command is a new module with an `Args` struct and a `run` function, plus one variant in
//! [`Command`] (or, for a release command, in `xtask-release` and `release::COMMANDS`).

pub mod bench;
mod dev;
pub mod loadtest;
mod migrate;
pub mod release;
mod test;
pub mod tidy;
pub mod token;
pub mod tools;
pub mod util;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

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
    /// Check the repository's text: named paths exist, nothing points outside it, every module has
    /// a `//!` line, every command is in docs/tooling.md, deploy/facts.toml agrees everywhere.
    Tidy(tidy::Args),
}

/// The whole command line: xtask's own commands, then the release commands it forwards.
fn command_line() -> clap::Command {
    release::add_commands(Cli::command())
}

/// `cargo xtask`'s `main`: parses the command line, forwards a release command to
/// `xtask-release` (this process becomes it), or runs one of xtask's own.
pub fn main() -> ExitCode {
    let matches = command_line().get_matches();
    if let Some((name, sub)) = matches.subcommand()
        && release::is_command(name)
    {
        return release::exec(name, sub);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    util::run_command(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Token(args) => token::run(args).await,
            Command::Test(args) => test::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Loadtest(args) => loadtest::run(args).await,
            Command::Tidy(args) => tidy::run(args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        super::command_line().debug_assert();
    }

    #[test]
    fn the_command_line_lists_the_release_commands() {
        let names: Vec<String> = super::command_line()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        for (name, _) in super::release::COMMANDS {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        assert!(names.iter().any(|n| n == "dev"), "{names:?}");
    }
}
