//! The image's SBOM: one CycloneDX 1.5 JSON document listing the Rust crates the service is built
//! from (`cargo cyclonedx`, pinned in `.ci/run`, without build-time dependencies, for the image's
//! target) and the Debian packages of its runtime layer (purl `pkg:deb/debian/…`, as the purl
//! specification's `deb` type spells them).
//!
//! Same inputs, same bytes: the timestamp is `SOURCE_DATE_EPOCH` (cargo cyclonedx honours it),
//! the workspace's own path is cut from `bom-ref`s, and the serial number derives from the image
//! digest.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::debian::Package;
use crate::util;

/// The SBOM's media type (CycloneDX's registered one) and so the artifact type of its manifest.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// The Rust target the image runs.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// `cargo cyclonedx` for the service crate: its BOM as JSON.
pub(crate) async fn rust_bom(epoch: u64) -> anyhow::Result<Value> {
    tokio::task::spawn_blocking(xtask::tools::require_cargo_cyclonedx).await??;
    let root = util::project_root();
    // cargo cyclonedx writes `<name>.json` beside every workspace member's Cargo.toml: a name of
    // our own, read and removed at once.
    let name = format!("xtask-sbom-{}", std::process::id());
    let out = util::cargo()
        .args([
            "cyclonedx",
            "--manifest-path",
            "crates/service/Cargo.toml",
            "--format",
            "json",
            "--spec-version",
            "1.5",
            "--no-build-deps",
            "--target",
            TARGET,
            "--quiet",
            "--override-filename",
            &name,
        ])
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .await
        .context("running cargo cyclonedx")?;
    let file = root.join("crates/service").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&file);
    remove_named(&root, &format!("{name}.json"));
    if !out.status.success() {
        bail!(
            "cargo cyclonedx failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = text.with_context(|| format!("cargo cyclonedx wrote no {}", file.display()))?;
    // The checkout's own path in `bom-ref`s (`path+file:///…/crates/domain#…`) would make the
    // document depend on where the workspace lies.
    let prefix = format!("path+file://{}/", root.display());
    let text = text.replace(&prefix, "path+file:///");
    serde_json::from_str(&text).context("cargo cyclonedx wrote invalid JSON")
}

/// `(name, version)` of every crate `cargo tree` resolves for the service on the image's target
/// (normal dependencies: what is linked, when the binary itself does not say).
pub(crate) async fn cargo_tree_crates() -> anyhow::Result<BTreeSet<(String, String)>> {
    let out = util::cargo()
        .args([
            "tree",
            "--locked",
            "--package",
            util::SERVICE,
            "--edges",
            "normal",
            "--target",
            TARGET,
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .await
        .context("running cargo tree")?;
    ensure!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            (name != util::SERVICE).then(|| (name.to_owned(), version.to_owned()))
        })
        .collect())
}

/// Narrows cargo cyclonedx's BOM to the crates in `linked`. It resolves features for the whole
/// workspace (`cargo metadata`), so it also lists crates that only other members enable; the
/// service's own build links fewer. Fails when `linked` names a crate the BOM lacks.
pub(crate) fn keep_only(
    bom: &mut Value,
    linked: &BTreeSet<(String, String)>,
) -> anyhow::Result<()> {
    let components = bom["components"]
        .as_array_mut()
        .context("cargo cyclonedx's BOM has no components")?;
    let key = |c: &Value| {
        Some((
            c["name"].as_str()?.to_owned(),
            c["version"].as_str()?.to_owned(),
        ))
    };
    let listed: BTreeSet<(String, String)> = components.iter().filter_map(key).collect();
    let missing: Vec<String> = linked
        .difference(&listed)
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "the binary links crates cargo cyclonedx does not list: {}",
        missing.join(", ")
    );
    components.retain(|c| key(c).is_some_and(|k| linked.contains(&k)));
    let mut kept: BTreeSet<String> = components
        .iter()
        .filter_map(|c| c["bom-ref"].as_str().map(str::to_owned))
        .collect();
    if let Some(root) = bom["metadata"]["component"]["bom-ref"].as_str() {
        kept.insert(root.to_owned());
    }
    if let Some(dependencies) = bom["dependencies"].as_array_mut() {
        dependencies.retain(|d| d["ref"].as_str().is_some_and(|r| kept.contains(r)));
        for dependency in dependencies {
            if let Some(on) = dependency
                .get_mut("dependsOn")
                .and_then(Value::as_array_mut)
            {
                on.retain(|r| r.as_str().is_some_and(|r| kept.contains(r)));
            }
        }
    }
    Ok(())
}

/// Removes `file_name` from every workspace member directory (the root, `xtask`, `xtask/release`,
/// `crates/*`).
fn remove_named(root: &Path, file_name: &str) {
    let mut dirs = vec![
        root.to_path_buf(),
        root.join("xtask"),
        root.join("xtask/release"),
    ];
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        dirs.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    for dir in dirs {
        let _ = std::fs::remove_file(dir.join(file_name));
    }
}

/// The image's SBOM: `rust` (cargo cyclonedx's BOM) with the Debian packages added as components
/// and dependencies, and the image as the described component.
pub(crate) fn document(
    mut rust: Value,
    packages: &[Package],
    (os_id, os_version): (&str, &str),
    image_digest: &str,
) -> anyhow::Result<Vec<u8>> {
    let distro = format!("{os_id}-{os_version}");
    let purl = |p: &Package| {
        format!(
            "pkg:deb/{os_id}/{}@{}?arch={}&distro={distro}",
            p.name,
            encode(&p.version),
            p.architecture
        )
    };
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let components = rust["components"]
        .as_array_mut()
        .context("cargo cyclonedx's BOM has no components")?;
    for package in packages {
        let mut component = json!({
            "type": "library",
            "bom-ref": purl(package),
            "name": package.name,
            "version": package.version,
            "purl": purl(package),
            "hashes": [{"alg": "SHA-256", "content": package.sha256}],
            "properties": [
                {"name": "syft:package:type", "value": "deb"},
                {"name": "debian:source", "value": package.source},
            ],
        });
        if let Some(maintainer) = package.field("Maintainer") {
            component["supplier"] = json!({ "name": maintainer });
        }
        if let Some(description) = package.field("Description") {
            component["description"] = json!(description);
        }
        components.push(component);
    }
    let dependencies = rust["dependencies"]
        .as_array_mut()
        .context("cargo cyclonedx's BOM has no dependencies")?;
    for package in packages {
        // `Depends:` within the image (first name of each alternative, versions dropped).
        let depends: Vec<String> = package
            .field("Depends")
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.split('|').next())
            .map(|d| d.split(['(', ':']).next().unwrap_or(d).trim())
            .filter_map(|d| packages.iter().find(|p| p.name == d && names.contains(&d)))
            .map(purl)
            .collect();
        dependencies.push(json!({ "ref": purl(package), "dependsOn": depends }));
    }
    let hash = Sha256::digest(image_digest.as_bytes());
    rust["serialNumber"] = json!(format!("urn:uuid:{}", uuid_from(&hash)));
    let metadata = &mut rust["metadata"];
    let service = metadata["component"].take();
    metadata["component"] = json!({
        "type": "container",
        "bom-ref": format!("image@{image_digest}"),
        "name": util::SERVICE,
        "version": image_digest,
        "hashes": [{"alg": "SHA-256", "content": image_digest.trim_start_matches("sha256:")}],
        "components": [service],
    });
    metadata["tools"]
        .as_array_mut()
        .context("cargo cyclonedx's BOM names no tools")?
        .push(json!({"vendor": "items", "name": "cargo xtask image"}));
    crate::oci::canonical_json(&rust)
}

/// A version as a purl writes it (`+` and `~` percent-encoded, `:` of an epoch too).
fn encode(version: &str) -> String {
    version
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
        .replace('~', "%7E")
}

/// An RFC 9562 UUID (version 8, "custom") from the first 16 bytes of `hash`.
fn uuid_from(hash: &[u8]) -> String {
    let mut b = [0_u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purl_versions_and_uuids_are_well_formed() {
        assert_eq!(encode("2.36-9+deb12u14"), "2.36-9%2Bdeb12u14");
        assert_eq!(encode("1:2.0~rc1"), "1%3A2.0%7Erc1");
        let uuid = uuid_from(&[0xff; 32]);
        assert_eq!(uuid, "ffffffff-ffff-8fff-bfff-ffffffffffff");
    }

    #[test]
    fn ci_installs_the_pinned_cargo_cyclonedx_and_cargo_auditable() {
        use xtask::tools::CARGO_CYCLONEDX_VERSION;
        let script = std::fs::read_to_string(util::project_root().join(".ci/run")).unwrap();
        assert!(
            script.contains(&format!(
                "cargo_cyclonedx_version={CARGO_CYCLONEDX_VERSION}"
            )),
            ".ci/run does not pin cargo-cyclonedx {CARGO_CYCLONEDX_VERSION}"
        );
    }
}
