//! The GitHub workflows (`.github/workflows`): every third-party action pinned by a full commit SHA
//! with its version in a comment, no permission a job was not given on its own, and the tools they
//! install at the versions `.ci/run` pins. actionlint and zizmor run in `.ci/run` on the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every workflow file: name and text.
fn workflows() -> Vec<(String, String)> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect(".github/workflows")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

/// The `uses:` lines of `text` that do not pin a third-party action (or a Docker image) to a full
/// commit SHA (a digest) with a `# v…` comment naming the version. Local actions and reusable
/// workflows of this repository (`./…`) need no pin.
fn unpinned_uses(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .filter_map(|l| l.strip_prefix("uses:"))
        .map(str::trim)
        .filter(|u| !u.starts_with("./"))
        .filter(|u| {
            let (reference, comment) = match u.split_once('#') {
                Some((r, c)) => (r.trim(), c.trim()),
                None => (u.trim(), ""),
            };
            let versioned = comment.starts_with('v') && comment[1..].starts_with(char::is_numeric);
            let pinned = if let Some(image) = reference.strip_prefix("docker://") {
                image
                    .rsplit_once("@sha256:")
                    .is_some_and(|(_, hex)| is_hex(hex, 64))
            } else {
                reference
                    .rsplit_once('@')
                    .is_some_and(|(action, sha)| action.contains('/') && is_hex(sha, 40))
            };
            !(pinned && versioned)
        })
        .map(str::to_owned)
        .collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_action_is_pinned_by_commit_sha_with_its_version() {
    let mut unpinned = Vec::new();
    let mut seen = 0;
    for (name, text) in workflows() {
        seen += text.matches("uses:").count();
        unpinned.extend(
            unpinned_uses(&text)
                .into_iter()
                .map(|u| format!("{name}: {u}")),
        );
    }
    assert!(seen > 10, "hardly any uses: {seen}");
    assert!(
        unpinned.is_empty(),
        "actions not pinned by a full commit SHA with a `# vX.Y.Z` comment: {unpinned:#?}"
    );
}

#[test]
fn an_unpinned_action_is_found() {
    let text = "steps:\n\
                - uses: actions/checkout@v4\n\
                - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1\n\
                - uses: actions/checkout@3d3c42e5 # v7.0.1\n\
                - uses: docker://alpine:3.20 # v3.20\n\
                - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n\
                  uses: ./.github/workflows/terraform-env.yml\n";
    assert_eq!(
        unpinned_uses(text),
        [
            "actions/checkout@v4",
            "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
            "actions/checkout@3d3c42e5 # v7.0.1",
            "docker://alpine:3.20 # v3.20",
        ]
    );
}

fn parse(name: &str, text: &str) -> Value {
    yaml_serde::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Least privilege: every workflow grants nothing at the top (`permissions: {}`), and every job
/// that runs steps says which permissions it needs.
#[test]
fn every_job_names_its_own_permissions() {
    for (name, text) in workflows() {
        let workflow = parse(&name, &text);
        assert_eq!(
            workflow["permissions"],
            serde_json::json!({}),
            "{name}: top-level permissions must be {{}}"
        );
        let jobs = workflow["jobs"].as_object().expect("jobs");
        for (job, body) in jobs {
            assert!(
                body["permissions"].is_object(),
                "{name}: job {job} has no permissions of its own"
            );
            // id-token (cloud credentials) only in jobs bound to a GitHub environment, or in calls
            // of a reusable workflow whose jobs are.
            if body["permissions"]["id-token"] == "write" {
                assert!(
                    body["environment"].is_string() || body["uses"].is_string(),
                    "{name}: job {job} may mint cloud credentials outside an environment"
                );
            }
        }
    }
}

/// Pull-request code never meets prod credentials: no job that can run on a pull request names a
/// prod environment (itself, through its matrix, or through the inputs of a reusable workflow).
#[test]
fn no_pull_request_job_uses_a_prod_environment() {
    let mut checked = 0;
    for (name, text) in workflows() {
        let workflow = parse(&name, &text);
        let on = &workflow["on"];
        assert!(
            on.get("pull_request_target").is_none(),
            "{name}: pull_request_target runs with secrets"
        );
        if on.get("pull_request").is_none() {
            continue;
        }
        let jobs = workflow["jobs"].as_object().expect("jobs");
        // Jobs that run on pushes only: guarded so, or needing such a job.
        let mut push_only: Vec<&str> = Vec::new();
        loop {
            let before = push_only.len();
            for (job, body) in jobs {
                let guarded = body["if"]
                    .as_str()
                    .is_some_and(|c| c.contains("github.event_name == 'push'"));
                let needs: Vec<&str> = match &body["needs"] {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if !push_only.contains(&job.as_str())
                    && (guarded || needs.iter().any(|n| push_only.contains(n)))
                {
                    push_only.push(job);
                }
            }
            if push_only.len() == before {
                break;
            }
        }
        for (job, body) in jobs
            .iter()
            .filter(|(j, _)| !push_only.contains(&j.as_str()))
        {
            let reach = [&body["environment"], &body["strategy"], &body["with"]]
                .map(|v| serde_json::to_string(v).unwrap())
                .join(" ");
            assert!(
                !reach.contains("prod"),
                "{name}: job {job} can run on a pull request with prod credentials: {reach}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "no pull-request job checked");
}

/// `cargo install --version V --locked NAME` lines of a text.
fn cargo_installs(text: &str) -> BTreeMap<String, String> {
    let mut pins = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("cargo install ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let version = words
            .windows(2)
            .find(|w| w[0] == "--version")
            .map(|w| w[1].to_owned());
        if let (Some(version), Some(name)) = (version, words.last()) {
            pins.insert((*name).to_owned(), version);
        }
    }
    pins
}

/// `name_version=V` assignments of `.ci/run` (its pins).
fn ci_pins(script: &str) -> BTreeMap<String, String> {
    script
        .lines()
        .filter_map(|l| l.trim().split_once("_version="))
        .filter(|(name, value)| {
            !name.contains(' ') && value.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .map(|(name, value)| (name.replace('_', "-"), value.trim().to_owned()))
        .collect()
}

#[test]
fn workflows_install_the_tools_at_the_versions_ci_pins() {
    let script = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let pins = ci_pins(&script);
    for tool in ["cargo-deny", "cargo-auditable", "cargo-cyclonedx", "zizmor"] {
        assert!(pins.contains_key(tool), ".ci/run pins no {tool}: {pins:?}");
    }
    let mut checked = 0;
    for (name, text) in workflows() {
        for (tool, version) in cargo_installs(&text) {
            let resolved = version.trim_matches('"');
            assert_eq!(
                pins.get(&tool).map(String::as_str),
                Some(resolved),
                "{name} installs {tool} {version}, .ci/run pins {:?}",
                pins.get(&tool)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "no cargo install found in the workflows");
}

#[test]
fn dependency_updates_cover_cargo_npm_actions_and_the_debian_lock() {
    let path = Path::new(&root()).join(".github/renovate.json");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("renovate.json")).unwrap();
    let managers = &config["enabledManagers"];
    for manager in ["cargo", "npm", "github-actions", "custom.regex"] {
        assert!(
            managers
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == manager)),
            "{manager} is not enabled"
        );
    }
    let lock = std::fs::read_to_string(root().join("docker/debian-packages.lock")).unwrap();
    let pattern = config["customManagers"][0]["matchStrings"][0]
        .as_str()
        .expect("a matchString");
    // The regex's literal shape: `name = "version"` lines.
    assert!(pattern.contains(r#" = "(?<currentValue>"#), "{pattern}");
    let package_lines = lock
        .lines()
        .skip_while(|l| *l != "[packages]")
        .skip(1)
        .filter(|l| l.contains(" = \""))
        .count();
    assert!(package_lines >= 5, "{lock}");
}
