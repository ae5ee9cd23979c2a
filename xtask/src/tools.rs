//! Cargo subcommands the test suite itself runs, pinned, and installed by `cargo xtask test` when
//! missing, so that a fresh machine needs nothing by hand (`.ci/run` pins and installs the same).
//!
//! cargo-cyclonedx writes the Rust part of every image's SBOM (`xtask-release`'s `image::sbom`),
//! and the local cloud's scenarios (lifecycle, rotation, local_cloud) push images of the service:
//! without it they cannot start.

use anyhow::{Context as _, ensure};

/// The pinned cargo-cyclonedx (`.ci/run` installs the same version; a test checks it).
pub const CARGO_CYCLONEDX_VERSION: &str = "0.5.9";

/// The version `cargo cyclonedx --version` prints (`cargo-cyclonedx 0.5.9`), or "" when it is not
/// installed.
pub fn cargo_cyclonedx_version() -> String {
    crate::util::std_cargo()
        .args(["cyclonedx", "--version"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Whether `printed` (what `--version` printed) is the pinned version.
fn is_pinned(printed: &str) -> bool {
    printed.rsplit(' ').next() == Some(CARGO_CYCLONEDX_VERSION)
}

/// The pinned cargo-cyclonedx is installed; otherwise an error naming what was found and the
/// command that installs it.
pub fn require_cargo_cyclonedx() -> anyhow::Result<()> {
    let found = cargo_cyclonedx_version();
    ensure!(
        is_pinned(&found),
        "the SBOM needs cargo-cyclonedx {CARGO_CYCLONEDX_VERSION} (found {found:?}): cargo \
         install --version {CARGO_CYCLONEDX_VERSION} --locked cargo-cyclonedx"
    );
    Ok(())
}

/// Installs the pinned cargo-cyclonedx with `cargo install --locked` (into cargo's own bin
/// directory, where cargo finds its subcommands) unless it is already there. On this 2-core
/// machine kind the install took 103 s (85 s of compiling), once.
pub fn ensure_cargo_cyclonedx() -> anyhow::Result<()> {
    let Err(missing) = require_cargo_cyclonedx() else {
        return Ok(());
    };
    eprintln!("xtask: {missing}");
    let status = crate::util::std_cargo()
        .args([
            "install",
            "--version",
            CARGO_CYCLONEDX_VERSION,
            "--locked",
            "cargo-cyclonedx",
        ])
        .status()
        .context("running cargo install")?;
    ensure!(
        status.success(),
        "cargo install cargo-cyclonedx {CARGO_CYCLONEDX_VERSION} failed ({status})"
    );
    require_cargo_cyclonedx().context("after cargo install: is cargo's bin directory on PATH?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_version_counts() {
        assert!(is_pinned(&format!(
            "cargo-cyclonedx {CARGO_CYCLONEDX_VERSION}"
        )));
        assert!(!is_pinned("cargo-cyclonedx 0.5.10"));
        assert!(!is_pinned("cargo-cyclonedx 10.5.9"));
        assert!(!is_pinned(""));
    }
}
