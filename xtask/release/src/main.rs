//! `cargo ship <command>` (or `cargo xtask <command>`, which forwards here): the release tooling,
//! one module per command: `lint`, `render`, `image`, `deploy`, `rotate`, `cloud`, `failover`.
//!
//! A binary of its own so that everyday `cargo xtask` commands never compile what only these
//! need: Google's control-plane clients, the OCI, tar and HCL crates, progenitor and prettyplease.
//! The helpers shared with xtask (cargo, the service binary, signals, paths), `loadtest` (deploy's
//! SLO gate), `token` and tidy's facts come from the `xtask` library; this crate never becomes a
//! dependency of xtask. A new release command is a new module with an `Args` struct and a `run`
//! function, one variant in [`Command`] and one entry in `xtask::release::COMMANDS` (its help,
//! which `cargo xtask --help` shows too).

mod cloud;
mod deploy;
mod failover;
mod image;
mod lint;
mod oci;
mod render;
mod rotate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
// xtask's modules under the names the commands use (`crate::util`, `crate::loadtest`, …).
use xtask::release::about;
use xtask::{bench, loadtest, tidy, token, util};

#[derive(Debug, Parser)]
#[command(
    name = "cargo ship",
    about = "Release tooling for the items service (`cargo xtask <command>` runs the same)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The help of each command is `xtask::release::COMMANDS`'s, which `cargo xtask --help` shows.
#[derive(Debug, Subcommand)]
enum Command {
    #[command(about = about("lint"))]
    Lint(lint::Args),
    #[command(about = about("render"))]
    Render(render::Args),
    #[command(about = about("image"))]
    Image(image::Args),
    #[command(about = about("deploy"))]
    Deploy(deploy::Args),
    #[command(about = about("rotate"))]
    Rotate(rotate::Args),
    #[command(about = about("cloud"))]
    Cloud(cloud::Args),
    #[command(about = about("failover"))]
    Failover(failover::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::run_command(async {
        match cli.command {
            Command::Lint(args) => lint::run(args).await,
            Command::Render(args) => render::run(args).await,
            Command::Image(args) => image::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Rotate(args) => rotate::run(args).await,
            Command::Cloud(args) => cloud::run(args).await,
            Command::Failover(args) => failover::run(args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// `cargo xtask` forwards exactly these commands, and shows the same help for each.
    #[test]
    fn the_commands_are_the_ones_xtask_forwards() {
        let cli = super::Cli::command();
        let ours: Vec<(String, String)> = cli
            .get_subcommands()
            .map(|c| {
                let about = c.get_about().map(ToString::to_string).unwrap_or_default();
                (c.get_name().to_owned(), about)
            })
            .collect();
        let forwarded: Vec<(String, String)> = xtask::release::COMMANDS
            .iter()
            .map(|(name, about)| ((*name).to_owned(), (*about).to_owned()))
            .collect();
        assert_eq!(ours, forwarded);
    }
}
