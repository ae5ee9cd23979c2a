//! The local gateway is a tool: it never links into the service binary. Walks the `[dependencies]`
//! (not dev-dependencies) of the workspace's `items-*` crates from `items-service`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Package name → the `items-*` crates among its normal `[dependencies]`, for every crate under
/// `crates/`.
fn workspace_graph() -> BTreeMap<String, Vec<String>> {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut name = None;
        let mut deps = Vec::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            let key = line.split(['=', '.', ' ']).next().unwrap_or_default();
            if section == "[package]" && key == "name" {
                name = line.split('"').nth(1).map(str::to_owned);
            }
            // Target-specific dependency tables count as normal dependencies too.
            let normal = section == "[dependencies]"
                || (section.starts_with("[target.") && section.ends_with(".dependencies]"));
            if normal && key.starts_with("items-") {
                deps.push(key.to_owned());
            }
        }
        graph.insert(name.expect("a package name"), deps);
    }
    graph
}

#[test]
fn the_service_binary_never_links_the_local_gateway_or_the_testkit() {
    let graph = workspace_graph();
    assert!(graph.contains_key("items-service"), "{graph:?}");
    let mut reached = BTreeSet::new();
    let mut todo = vec!["items-service".to_owned()];
    while let Some(name) = todo.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if reached.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    for tool in ["items-local-gateway", "items-testkit", "items-client"] {
        assert!(
            !reached.contains(tool),
            "items-service depends on {tool} (through {reached:?})"
        );
    }
    assert!(reached.contains("items-http"), "the walk found {reached:?}");
}
