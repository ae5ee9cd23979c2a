//! The `LICENSE` file is the text of the license every crate declares. cargo-deny ignores our own
//! crates (`deny.toml`: `private = { ignore = true }`), so nothing else notices a missing or
//! different `LICENSE`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The license of `[workspace.package]`, which `LICENSE` must hold.
const SPDX: &str = "Apache-2.0";

/// The Apache License 2.0 as apache.org publishes it: its heading, its nine sections in order and
/// the end of its terms, whitespace collapsed.
const APACHE_2_0: &[&str] = &[
    "Apache License Version 2.0, January 2004 http://www.apache.org/licenses/ \
     TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION 1. Definitions.",
    "2. Grant of Copyright License.",
    "3. Grant of Patent License.",
    "4. Redistribution.",
    "5. Submission of Contributions.",
    "6. Trademarks.",
    "7. Disclaimer of Warranty.",
    "8. Limitation of Liability.",
    "9. Accepting Warranty or Additional Liability.",
    "END OF TERMS AND CONDITIONS",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
        .to_path_buf()
}

/// The parts of `APACHE_2_0` that `text` lacks or has out of order (the first must open the
/// text); none for the license's own text.
fn missing_parts(text: &str) -> Vec<&'static str> {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut rest = text.as_str();
    let mut missing = Vec::new();
    for (i, part) in APACHE_2_0.iter().enumerate() {
        match rest.find(part) {
            Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
            _ => missing.push(*part),
        }
    }
    missing
}

#[test]
fn license_is_the_apache_2_0_text_the_workspace_declares() {
    let root = repo_root();
    let manifest: toml::Table = fs::read_to_string(root.join("Cargo.toml"))
        .expect("readable Cargo.toml")
        .parse()
        .expect("Cargo.toml is TOML");
    let declared = manifest["workspace"]["package"]["license"].as_str();
    assert_eq!(
        declared,
        Some(SPDX),
        "[workspace.package] license changed: make LICENSE that license's text, then update this test"
    );
    let text = fs::read_to_string(root.join("LICENSE")).expect(
        "LICENSE exists at the repository root, as Cargo.toml's license = \"Apache-2.0\" says",
    );
    let missing = missing_parts(&text);
    assert!(
        missing.is_empty(),
        "LICENSE is not the Apache License 2.0 text; missing or out of order: {missing:?}"
    );
}

/// Every crate inherits the workspace's license, so `LICENSE` covers all of them.
#[test]
fn every_crate_declares_the_workspace_license() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let others: Vec<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["license"].as_str() != Some(SPDX))
        .map(|p| format!("{} ({})", p["name"], p["license"]))
        .collect();
    assert!(others.is_empty(), "crates not under {SPDX}: {others:?}");
}

#[test]
fn another_text_is_not_taken_for_the_apache_license() {
    assert_eq!(missing_parts("").len(), APACHE_2_0.len());
    let mit = "MIT License\n\nCopyright (c) 2025\n\nPermission is hereby granted, free of charge";
    assert_eq!(missing_parts(mit).len(), APACHE_2_0.len());
    let truncated = APACHE_2_0[..5].join("\n\n   ");
    assert_eq!(missing_parts(&truncated), &APACHE_2_0[5..]);
    let reordered = [APACHE_2_0[1], APACHE_2_0[0]].join(" ");
    assert_eq!(missing_parts(&reordered)[0], APACHE_2_0[0]);
}
