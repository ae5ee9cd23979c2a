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
    if crate::tidy::check_workspace()? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }
    // The local cloud's scenarios and the image tests (xtask-release's) push images, whose SBOM
    // needs it. Without it only they fail, each saying so: the rest still runs.
    let packages = package_args(&args.extra);
    if (packages.is_empty() || packages.iter().any(|p| p.contains("xtask-release")))
        && let Err(e) = crate::tools::ensure_cargo_cyclonedx()
    {
        eprintln!(
            "xtask: warning: {e:#}; the image tests and the local cloud's scenarios will fail"
        );
    }
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
    if !nextest {
        eprintln!(
            "xtask: note: cargo-nextest is not installed, falling back to `cargo test` \
             (install it with `cargo install --locked cargo-nextest`)"
        );
    }

    let mut code = ExitCode::SUCCESS;
    for run in cargo_runs(nextest, args.no_doc, &args.extra) {
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

/// The cargo invocations for one test run. The extra arguments go to `cargo nextest run` (or to
/// `cargo test`, which takes the same `-p` and name filters); `--workspace` is added unless they
/// pick packages themselves (cargo lets `--workspace` win over `-p`).
fn cargo_runs(nextest: bool, no_doc: bool, extra: &[String]) -> Vec<Vec<String>> {
    let packages = package_args(extra);
    let scope: &[&str] = if packages.is_empty() {
        &["--workspace"]
    } else {
        &[]
    };
    let mut main: Vec<String> = if nextest {
        vec!["nextest".into(), "run".into()]
    } else {
        vec!["test".into()]
    };
    main.extend(scope.iter().map(|s| (*s).to_owned()));
    if no_doc && !nextest {
        main.extend(["--lib", "--bins", "--tests"].map(String::from));
    }
    main.extend(extra.iter().cloned());
    let mut runs = vec![main];
    // nextest does not run doc tests; `cargo test` already did. `cargo test --doc` refuses a
    // package without a library (xtask-release): left out, and no doc run when none is left.
    let doc_packages = with_a_library(&packages);
    if nextest && !no_doc && (packages.is_empty() || !doc_packages.is_empty()) {
        let mut doc = vec!["test".to_owned(), "--doc".to_owned()];
        doc.extend(scope.iter().map(|s| (*s).to_owned()));
        doc.extend(doc_packages.iter().map(|a| (*a).to_owned()));
        runs.push(doc);
    }
    runs
}

/// `packages` (as [`package_args`] returns them) without the workspace's binary-only package.
fn with_a_library<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    let binary_only = |name: &str| name == crate::release::PACKAGE;
    let mut out = Vec::new();
    let mut args = packages.iter();
    while let Some(&a) = args.next() {
        if a == "-p" || a == "--package" {
            match args.next() {
                Some(&name) if binary_only(name) => {}
                Some(&name) => out.extend([a, name]),
                None => out.push(a),
            }
        } else {
            let name = a
                .strip_prefix("--package=")
                .or_else(|| a.strip_prefix("-p"))
                .unwrap_or(a);
            if !binary_only(name) {
                out.push(a);
            }
        }
    }
    out
}

/// The `-p NAME` / `--package NAME` / `--package=NAME` / `-pNAME` arguments among `extra`.
fn package_args(extra: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut args = extra.iter().take_while(|a| *a != "--");
    while let Some(a) = args.next() {
        if a == "-p" || a == "--package" {
            out.push(a.as_str());
            if let Some(name) = args.next() {
                out.push(name.as_str());
            }
        } else if a.starts_with("--package=") || (a.starts_with("-p") && a.len() > 2) {
            out.push(a.as_str());
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn whole_workspace_by_default() {
        assert_eq!(
            cargo_runs(true, false, &[]),
            [
                strings(&["nextest", "run", "--workspace"]),
                strings(&["test", "--doc", "--workspace"]),
            ]
        );
        assert_eq!(
            cargo_runs(false, false, &[]),
            [strings(&["test", "--workspace"])]
        );
        assert_eq!(
            cargo_runs(true, true, &strings(&["faults"])),
            [strings(&["nextest", "run", "--workspace", "faults"])]
        );
    }

    #[test]
    fn packages_named_by_the_caller_replace_the_workspace() {
        let extra = strings(&["-p", "items-service", "faults"]);
        assert_eq!(
            cargo_runs(true, false, &extra),
            [
                strings(&["nextest", "run", "-p", "items-service", "faults"]),
                strings(&["test", "--doc", "-p", "items-service"]),
            ]
        );
        assert_eq!(
            cargo_runs(
                true,
                false,
                &strings(&["-p", "xtask", "-p", "xtask-release"])
            ),
            [
                strings(&["nextest", "run", "-p", "xtask", "-p", "xtask-release"]),
                strings(&["test", "--doc", "-p", "xtask"]),
            ]
        );
        assert_eq!(
            cargo_runs(true, false, &strings(&["--package=xtask-release"])),
            [strings(&["nextest", "run", "--package=xtask-release"])]
        );
        assert_eq!(
            cargo_runs(
                false,
                true,
                &strings(&["--package=xtask", "--", "--nocapture"])
            ),
            [strings(&[
                "test",
                "--lib",
                "--bins",
                "--tests",
                "--package=xtask",
                "--",
                "--nocapture"
            ])]
        );
    }
}
