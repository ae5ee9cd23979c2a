//! The release commands: `xtask-release` (xtask/release/, alias `cargo ship`) implements them, and
//! `cargo xtask <command> …` hands them over by replacing this process with
//! `cargo run --package xtask-release -- <command> …`. Kept apart so that xtask itself (`dev`,
//! `test`, …) never compiles the Google Cloud clients, the OCI, HCL and code-generation crates
//! those commands need.
//!
//! `exec` rather than a child process: the process stays the one the caller started (the shell's
//! job, `setsid`'s session, CI's step), so SIGINT and SIGTERM reach the release binary directly,
//! as with `cargo ship` (deploy turns them into a rollback), and its exit status is the caller's.
//! `cargo run` execs the binary in turn on Unix.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use clap::{Arg, ArgMatches};

use crate::util;

/// The package (and binary) that implements the release commands.
pub const PACKAGE: &str = "xtask-release";

/// Each release command and its one-line help: the one list, which `xtask-release`'s command line
/// also takes its help from (a test there holds both to the same names).
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "lint",
        "Static checks no compiler makes: `lint terraform` checks deploy/terraform against its \
         modules, deploy/environments and the IAM and secret rules (exit 1 on a problem)",
    ),
    (
        "render",
        "Render openapi/items.openapi.json and the API Gateway configs in openapi/gateway/ \
         (--check: fail on drift)",
    ),
    (
        "image",
        "Build the service's OCI image without a container engine (and push it with --push)",
    ),
    (
        "deploy",
        "Roll the service out to Cloud Run and API Gateway in every region of an environment",
    ),
    (
        "rotate",
        "Rotate a secret without failing requests: `rotate page-token --env E [--phase \
         add|sign|retire]`, `rotate db-password --env E`",
    ),
    (
        "cloud",
        "Run the local cloud `deploy --env local` deploys to: PostgreSQL, an OCI registry, Cloud \
         Run (each revision run from its image) and one local API Gateway per region",
    ),
    (
        "failover",
        "The failover runbook's API steps: drain or restore a region in the global load \
         balancer, promote the cross-region Cloud SQL replica (docs/deploy.md, \"Failover \
         runbook\")",
    ),
];

/// Whether `name` is one of [`COMMANDS`].
pub fn is_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

/// The one-line help of release command `name` (empty for another name).
pub fn about(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, about)| about)
}

/// `cmd` with one subcommand per release command, taking every argument as is (`--help`
/// included: the release binary answers it).
pub(crate) fn add_commands(cmd: clap::Command) -> clap::Command {
    cmd.subcommands(COMMANDS.iter().map(|(name, about)| {
        clap::Command::new(*name)
            .about(format!("{about} [{PACKAGE}: `cargo ship {name}`]"))
            .disable_help_flag(true)
            .arg(
                Arg::new("args")
                    .num_args(0..)
                    .trailing_var_arg(true)
                    .allow_hyphen_values(true)
                    .value_parser(clap::value_parser!(OsString)),
            )
    }))
}

/// The arguments `cargo run` gets to run release command `name` with `args`.
fn cargo_run_args(name: &str, args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let manifest = util::project_root().join("Cargo.toml");
    let mut out: Vec<OsString> = vec![
        "run".into(),
        "--manifest-path".into(),
        manifest.into(),
        "--package".into(),
        PACKAGE.into(),
        "--".into(),
        name.into(),
    ];
    out.extend(args);
    out
}

/// Replaces this process with `cargo run --package xtask-release -- <name> <args>`; returns only
/// when that fails. The current directory stays the caller's, so relative paths among the
/// arguments mean what they meant.
pub(crate) fn exec(name: &str, matches: &ArgMatches) -> ExitCode {
    let args = matches
        .get_many::<OsString>("args")
        .into_iter()
        .flatten()
        .cloned();
    if !built() {
        eprintln!(
            "xtask: `{name}` is a release command: building {PACKAGE} first (Google Cloud \
             clients, OCI, HCL, code generation: minutes on a cold target, once); \
             `cargo ship {name} …` runs it directly"
        );
    }
    let mut command = crate::util::std_cargo();
    let err = command.args(cargo_run_args(name, args)).exec();
    eprintln!(
        "error: running `{} run --package {PACKAGE}`: {err}",
        command.get_program().to_string_lossy()
    );
    ExitCode::FAILURE
}

/// Whether the release binary exists beside this one (cargo puts both in the same directory).
fn built() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(PACKAGE)))
        .is_some_and(|bin| bin.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_runs_the_release_package_with_the_same_arguments() {
        let args = cargo_run_args("deploy", ["--env".into(), "dev".into()]);
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "run");
        assert_eq!(args[1], "--manifest-path");
        assert!(args[2].ends_with("Cargo.toml"), "{args:?}");
        assert_eq!(
            args[3..],
            ["--package", "xtask-release", "--", "deploy", "--env", "dev"]
        );
    }

    #[test]
    fn every_argument_of_a_release_command_is_forwarded_as_given() {
        let matches = crate::command_line()
            .try_get_matches_from([
                "xtask", "deploy", "--env", "dev", "--help", "--", "-x", "rest",
            ])
            .expect("a release command takes any arguments");
        let (name, sub) = matches.subcommand().expect("a subcommand");
        assert_eq!(name, "deploy");
        let args: Vec<&OsString> = sub.get_many::<OsString>("args").unwrap().collect();
        assert_eq!(args, ["--env", "dev", "--help", "--", "-x", "rest"]);
    }

    #[test]
    fn only_the_release_commands_are_forwarded() {
        assert!(is_command("deploy") && is_command("render") && is_command("cloud"));
        assert!(!is_command("dev") && !is_command("test") && !is_command("tidy"));
        assert_eq!(about("frobnicate"), "");
        assert!(about("image").contains("OCI image"));
    }
}
