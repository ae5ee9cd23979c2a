//! No HTTP path that the service, its probes, the uptime checks or `cargo xtask` use may be one
//! that Cloud Run's front end reserves: paths ending in `z` (Google's HTML 404 answers
//! `/healthz` through a `run.app` URL; the container never sees it), paths under `/_ah/`, and
//! `/eventlog` (https://cloud.google.com/run/docs/known-issues#ah).
//! `items-gateway-spec`'s render checks hold the same rule over the API's routes.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else if ["rs", "tf", "tftpl", "toml", "yaml", "json", "md"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            out.push(path);
        }
    }
}

/// Path-like words in `text` (`/a1/b-c_d`, lower case and digits, as routes are written) that a reserved
/// path rule catches.
fn reserved_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let is_path_byte =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'/';
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i] == b'/'
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !is_path_byte(bytes[j]))
            .unwrap_or(bytes.len());
        let boundary = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
        let word = &text[i..end];
        let trimmed = word.trim_end_matches('/');
        let reserved = trimmed.len() > 1 && trimmed.ends_with('z')
            || word.starts_with("/_ah/")
            || trimmed.ends_with("/eventlog");
        if boundary && reserved {
            found.push(word.to_owned());
        }
        i = end.max(i + 1);
    }
    found
}

#[test]
fn the_scanner_catches_reserved_paths() {
    assert_eq!(
        reserved_paths(r#"path = "/healthz" then GET /readyz/, /_ah/warmup and /v1/eventlog"#),
        ["/healthz", "/readyz/", "/_ah/warmup", "/v1/eventlog"]
    );
    assert!(
        reserved_paths("/health/live /health/ready https://x.run.app/items a/tar.gz").is_empty()
    );
}

#[test]
fn no_probe_route_or_check_uses_a_reserved_path() {
    let root = root();
    let mut all = Vec::new();
    for dir in [
        "deploy",
        "docs",
        "openapi",
        "xtask/src",
        "xtask/release/src",
        "crates",
        ".ci",
        ".github",
    ] {
        files(&root.join(dir), &mut all);
    }
    all.push(root.join("README.md"));
    all.push(root.join(".ci/run"));
    // The rule's own implementation and tests name the reserved forms on purpose.
    let exempt = [
        "crates/gateway-spec/src/checks.rs",
        "crates/gateway-spec/tests/render.rs",
    ];
    let mut problems = Vec::new();
    for path in all {
        if exempt.iter().any(|e| path.ends_with(e)) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            // Sentences that explain the rule may name the reserved forms: a line that says
            // "reserve", or whose neighbour does, is not a use.
            let near = &lines[n.saturating_sub(1)..(n + 2).min(lines.len())];
            if near.iter().any(|l| l.contains("reserve")) {
                continue;
            }
            for word in reserved_paths(line) {
                let file = path.strip_prefix(&root).unwrap_or(&path).display();
                problems.push(format!("{file}:{}: {word}", n + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "paths Cloud Run reserves (ending in z, under /_ah/, /eventlog) are used:\n{}",
        problems.join("\n")
    );
}
