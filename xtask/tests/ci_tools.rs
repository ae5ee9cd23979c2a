//! The tools CI installs with `cargo install` are pinned: a new release of one (cargo-deny's
//! checks, say) must not change what CI accepts without a commit that says so.

use std::fs;
use std::path::Path;

/// The `cargo install` lines of `script` that lack `--version <v>` or `--locked`.
fn unpinned_installs(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && line.contains("cargo install "))
        .filter(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let versioned = words
                .windows(2)
                .any(|w| w[0] == "--version" && !w[1].starts_with('-'))
                || words.iter().any(|w| w.starts_with("--version="));
            !(versioned && words.contains(&"--locked"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn ci_installs_each_cargo_tool_at_a_pinned_version() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/run");
    let script = fs::read_to_string(&path).expect("readable .ci/run");
    assert!(
        script.contains("cargo install "),
        ".ci/run installs no cargo tool any more: drop or retarget this test"
    );
    let unpinned = unpinned_installs(&script);
    assert!(
        unpinned.is_empty(),
        ".ci/run installs without `--version <v> --locked`: {unpinned:#?}"
    );
}

#[test]
fn an_install_without_a_version_or_lock_is_found() {
    let script = "cargo install --locked cargo-deny\n\
                  cargo install --version 0.20.2 cargo-deny\n\
                  # cargo install cargo-nextest (a comment)\n\
                  cargo install --version \"$v\" --locked cargo-deny\n";
    assert_eq!(
        unpinned_installs(script),
        [
            "cargo install --locked cargo-deny",
            "cargo install --version 0.20.2 cargo-deny",
        ],
    );
}
