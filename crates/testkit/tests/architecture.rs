//! The crate rules of ARCHITECTURE.md ("Invariants"), held by a test: `cargo metadata` gives the
//! resolved dependency graph of the workspace, and each rule names a crate and what it must never
//! depend on. "Links" follows normal dependencies transitively (what ends up in the crate's
//! binary or library); "declares" also looks at the crate's own dev- and build-dependencies.
//! `ONLY_USERS` holds the reverse rules (which crates may declare a library as a normal
//! dependency), and every workspace crate is either a part of the service or a tool crate.
//! A failure names the rule and the chain of crates that breaks it.
//!
//! It lives in `items-testkit` (a default member) so that a plain `cargo test` runs it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Crates that serve tools and tests: they never link into the service binary. The one list: a
/// new tool crate is one line here (`items-local-cloud` may not exist yet; a name that is absent
/// from the graph is simply never reached).
const TOOL_CRATES: &[&str] = &[
    "xtask",
    "xtask-release",
    "items-gateway-spec",
    "items-testkit",
    "items-local-gateway",
    "items-local-cloud",
    "items-local-run",
    "items-client",
    "items-memstore",
    "items-local-run",
    "items-local-cloud",
];

/// The crates the service binary is made of. Every workspace crate is here or in `TOOL_CRATES`.
const SERVICE_CRATES: &[&str] = &[
    "items-service",
    "items-http",
    "items-repository",
    "items-telemetry",
    "items-domain",
];

/// Our own crates (a trailing `*` matches a prefix).
const OURS: &[&str] = &["items-*"];

/// Libraries only the tools use (control-plane clients, image layers, progress, code generation,
/// Terraform parsing, the browser test's driver): the service must not pull them in.
const XTASK_ONLY: &[&str] = &[
    "google-cloud-run-v2",
    "google-cloud-apigateway-v1",
    "google-cloud-lro",
    "oci-spec",
    "tar",
    "indicatif",
    "progenitor-impl",
    "openapiv3",
    "prettyplease",
    "hcl-rs",
    "thirtyfour",
];

/// Libraries only the release commands need (`xtask-release`: deploy, image, render, lint): the
/// everyday `xtask` must not pull them in, so that a first `cargo xtask dev` does not compile them.
const RELEASE_ONLY: &[&str] = &[
    "google-cloud-run-v2",
    "google-cloud-apigateway-v1",
    "google-cloud-lro",
    "oci-spec",
    "tar",
    "auditable-info",
    "progenitor-impl",
    "openapiv3",
    "prettyplease",
    "hcl-rs",
    "items-local-cloud",
    "items-local-run",
];

/// The only normal dependencies `items-domain` declares.
const DOMAIN_DEPENDENCIES: &[&str] = &["thiserror", "time"];

/// Reverse rules: a library (pattern) and the only workspace crates that may declare it as a
/// normal dependency. Dev-dependencies are free (tests may use anything).
struct OnlyUsers {
    library: &'static str,
    users: &'static [&'static str],
    why: &'static str,
}

const ONLY_USERS: &[OnlyUsers] = &[
    OnlyUsers {
        library: "tokio-postgres",
        users: &[
            "items-repository",
            "items-testkit",
            "xtask",
            "xtask-release",
        ],
        why: "only repository knows SQL (testkit creates test databases, xtask migrates, \
              xtask-release's local cloud creates its database)",
    },
    OnlyUsers {
        library: "deadpool*",
        users: &["items-repository"],
        why: "only repository knows SQL",
    },
    OnlyUsers {
        library: "refinery*",
        users: &["items-repository"],
        why: "only repository knows SQL (the migrations)",
    },
    OnlyUsers {
        library: "actix*",
        users: &[
            "items-http",
            "items-service",
            "items-local-gateway",
            "items-local-run",
            "items-local-cloud",
        ],
        why: "of the service's crates only http knows HTTP (service wires the server); the local \
              stand-ins of Google's front ends are HTTP servers of their own",
    },
    OnlyUsers {
        library: "google-cloud-run-v2",
        users: &["xtask-release", "items-local-cloud"],
        why: "xtask-release is the only place that calls Google Cloud control-plane APIs; the local cloud \
              serves that API and compares revision templates with the client's own model types",
    },
    OnlyUsers {
        library: "google-cloud-apigateway-v1",
        users: &["xtask-release"],
        why: "xtask-release is the only place that calls Google Cloud control-plane APIs",
    },
    OnlyUsers {
        library: "google-cloud-lro",
        users: &["xtask-release"],
        why: "xtask-release is the only place that calls Google Cloud control-plane APIs",
    },
    OnlyUsers {
        library: "items-testkit",
        users: &["xtask", "xtask-release"],
        why: "testkit is used by tests (dev-dependencies) and the tools only",
    },
];

/// Frameworks, database drivers and async runtimes (a trailing `*` matches a prefix).
const RUNTIMES: &[&str] = &[
    "actix*",
    "tokio*",
    "postgres*",
    "deadpool*",
    "hyper",
    "reqwest",
    "refinery*",
    "mio",
];

#[derive(Clone, Copy)]
enum Scope {
    /// Normal dependencies, transitively.
    Links,
    /// Normal dependencies transitively, and the crate's own dependencies of every kind.
    Declares,
}

struct Rule {
    krate: &'static str,
    scope: Scope,
    forbidden: &'static [&'static [&'static str]],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        krate: "items-domain",
        scope: Scope::Links,
        forbidden: &[RUNTIMES, &["items-*"]],
        why: "domain depends on no web framework, no database driver, no async runtime",
    },
    Rule {
        krate: "items-http",
        scope: Scope::Declares,
        forbidden: &[&["items-repository"]],
        why: "http and repository meet only in domain's ItemStore port (tests use items-memstore)",
    },
    Rule {
        krate: "items-repository",
        scope: Scope::Declares,
        forbidden: &[&["items-http", "actix*"]],
        why: "http and repository meet only in domain's ItemStore port; only http knows HTTP",
    },
    Rule {
        krate: "items-telemetry",
        scope: Scope::Links,
        forbidden: &[&[
            "actix*",
            "items-http",
            "items-repository",
            "tokio-postgres",
            "deadpool*",
        ]],
        why: "telemetry knows no web framework and no database (the actix glue lives in http)",
    },
    Rule {
        krate: "items-gateway-spec",
        scope: Scope::Links,
        forbidden: &[&["actix*", "items-http"]],
        why: "gateway-spec takes the spec as JSON; it knows no web framework",
    },
    Rule {
        krate: "items-gateway-spec",
        scope: Scope::Links,
        forbidden: &[OURS],
        why: "gateway-spec reads the consumer spec as JSON: no normal dependency on our crates",
    },
    Rule {
        krate: "items-local-gateway",
        scope: Scope::Links,
        forbidden: &[OURS],
        why: "local-gateway serves the committed rendered config: no second rendering path",
    },
    Rule {
        krate: "items-client",
        scope: Scope::Links,
        forbidden: &[OURS],
        why: "client is generated from the consumer spec; it knows only the wire",
    },
    Rule {
        krate: "items-testkit",
        scope: Scope::Links,
        forbidden: &[OURS],
        why: "testkit builds the service's command by path; it links none of our crates",
    },
    Rule {
        krate: "items-memstore",
        scope: Scope::Links,
        forbidden: &[&["items-http", "items-repository", "items-service", "actix*"]],
        why: "memstore is an ItemStore of domain's port, nothing more",
    },
    Rule {
        krate: "items-service",
        scope: Scope::Links,
        forbidden: &[TOOL_CRATES, XTASK_ONLY],
        why: "tools and test support never link into the service binary",
    },
    Rule {
        krate: "xtask",
        scope: Scope::Links,
        forbidden: &[RELEASE_ONLY, &["xtask-release"]],
        why: "cargo xtask dev compiles none of the crates only the release commands need \
              (they are xtask-release's, which depends on xtask and never the other way round)",
    },
];

/// The workspace's resolved graph: package name → its dependencies (name, kinds).
struct Graph {
    deps: BTreeMap<String, Vec<(String, BTreeSet<String>)>>,
    members: BTreeSet<String>,
}

impl Graph {
    fn load() -> Graph {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(&manifest)
            .output()
            .expect("running cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let name_of: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().expect("id"),
                    p["name"].as_str().expect("name"),
                )
            })
            .collect();
        let members = metadata["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| name_of[id.as_str().expect("member id")].to_owned())
            .collect();
        let mut deps = BTreeMap::new();
        for node in metadata["resolve"]["nodes"]
            .as_array()
            .expect("resolve.nodes")
        {
            let name = name_of[node["id"].as_str().expect("node id")];
            let edges = node["deps"].as_array().expect("deps").iter().map(|d| {
                let kinds = d["dep_kinds"].as_array().expect("dep_kinds").iter();
                let kinds = kinds.map(|k| k["kind"].as_str().unwrap_or("normal").to_owned());
                (
                    name_of[d["pkg"].as_str().expect("pkg")].to_owned(),
                    kinds.collect(),
                )
            });
            deps.insert(name.to_owned(), edges.collect());
        }
        Graph { deps, members }
    }

    /// Every crate `from` reaches, each with the chain that reaches it (`from → … → crate`).
    fn reached(&self, from: &str, scope: Scope) -> BTreeMap<String, Vec<String>> {
        let mut chains = BTreeMap::from([(from.to_owned(), vec![from.to_owned()])]);
        let mut todo = VecDeque::from([from.to_owned()]);
        while let Some(name) = todo.pop_front() {
            let declared_here = matches!(scope, Scope::Declares) && name == from;
            for (dep, kinds) in self.deps.get(&name).into_iter().flatten() {
                let linked = kinds.contains("normal");
                if (linked || declared_here) && !chains.contains_key(dep) {
                    let mut chain = chains[&name].clone();
                    chain.push(dep.clone());
                    chains.insert(dep.clone(), chain);
                    if linked {
                        todo.push_back(dep.clone());
                    }
                }
            }
        }
        chains.remove(from);
        chains
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The breaches of `rules` in `graph`, one line each: the first forbidden crate on each chain
/// (what it pulls in itself is not repeated).
fn breaches(graph: &Graph, rules: &[Rule]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules {
        assert!(
            graph.deps.contains_key(rule.krate),
            "no crate {}",
            rule.krate
        );
        let mut reached: Vec<_> = graph.reached(rule.krate, rule.scope).into_iter().collect();
        reached.sort_by_key(|(_, chain)| chain.len());
        let mut breached = BTreeSet::new();
        for (dep, chain) in reached {
            let mut patterns = rule.forbidden.iter().flat_map(|list| list.iter());
            let Some(pattern) = patterns.find(|p| matches(p, &dep)) else {
                continue;
            };
            if chain.iter().any(|c| breached.contains(c)) {
                continue;
            }
            found.push(format!(
                "{} must not depend on {pattern} ({}): {}",
                rule.krate,
                rule.why,
                chain.join(" → ")
            ));
            breached.insert(dep);
        }
    }
    for rule in ONLY_USERS {
        for member in &graph.members {
            let declares = graph.deps[member]
                .iter()
                .any(|(dep, kinds)| kinds.contains("normal") && matches(rule.library, dep));
            if declares && !rule.users.contains(&member.as_str()) {
                found.push(format!(
                    "{member} must not depend on {} ({}): only {} may",
                    rule.library,
                    rule.why,
                    rule.users.join(", ")
                ));
            }
        }
    }
    if let Some(domain) = graph.deps.get("items-domain") {
        for (dep, kinds) in domain {
            if kinds.contains("normal") && !DOMAIN_DEPENDENCIES.contains(&dep.as_str()) {
                found.push(format!(
                    "items-domain must not depend on {dep} (its only dependencies are {})",
                    DOMAIN_DEPENDENCIES.join(" and ")
                ));
            }
        }
    }
    for member in &graph.members {
        let known = |list: &[&str]| list.contains(&member.as_str());
        if !known(SERVICE_CRATES) && !known(TOOL_CRATES) {
            found.push(format!(
                "{member} is neither in SERVICE_CRATES nor in TOOL_CRATES: classify it (a tool \
                 crate never links into the service)"
            ));
        }
    }
    found
}

#[test]
fn no_crate_depends_on_what_architecture_md_forbids() {
    let graph = Graph::load();
    let found = breaches(&graph, RULES);
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md invariants broken:\n{}",
        found.join("\n")
    );
    // The walk sees the graph: the service links http, repository and domain.
    let service = graph.reached("items-service", Scope::Links);
    for part in [
        "items-http",
        "items-repository",
        "items-domain",
        "items-telemetry",
    ] {
        assert!(
            service.contains_key(part),
            "{part} not found in {service:?}"
        );
    }
}

/// The checker itself: a service that links a tool through another crate (the local gateway, and
/// the local cloud that is only a name in `TOOL_CRATES`), a domain with a runtime and an extra
/// dependency, http with a dev-dependency on repository and a normal one on a database driver,
/// a gateway-spec that links http, an xtask that links a release-only library and an unclassified
/// crate are all caught, with their chains.
#[test]
fn the_rules_catch_a_forbidden_dependency() {
    let edge = |name: &str, kind: &str| (name.to_owned(), BTreeSet::from([kind.to_owned()]));
    let deps = BTreeMap::from([
        (
            "items-service".to_owned(),
            vec![
                edge("items-http", "normal"),
                edge("items-local-cloud", "normal"),
            ],
        ),
        (
            "items-http".to_owned(),
            vec![
                edge("items-domain", "normal"),
                edge("items-local-gateway", "normal"),
                edge("items-repository", "dev"),
                edge("tokio-postgres", "normal"),
            ],
        ),
        ("items-domain".to_owned(), vec![edge("time-ext", "normal")]),
        ("time-ext".to_owned(), vec![edge("tokio", "normal")]),
        ("items-repository".to_owned(), vec![]),
        ("items-telemetry".to_owned(), vec![]),
        (
            "items-gateway-spec".to_owned(),
            vec![edge("items-http", "normal")],
        ),
        ("items-local-gateway".to_owned(), vec![]),
        ("items-local-cloud".to_owned(), vec![]),
        ("items-client".to_owned(), vec![]),
        ("items-testkit".to_owned(), vec![]),
        ("items-memstore".to_owned(), vec![]),
        ("items-new".to_owned(), vec![]),
        ("tokio".to_owned(), vec![]),
        ("tokio-postgres".to_owned(), vec![]),
        (
            "xtask".to_owned(),
            vec![edge("items-testkit", "normal"), edge("hcl-rs", "normal")],
        ),
        ("hcl-rs".to_owned(), vec![]),
    ]);
    let members = deps
        .keys()
        .filter(|k| k.starts_with("items-"))
        .cloned()
        .collect();
    let graph = Graph { deps, members };
    let found = breaches(&graph, RULES);
    let expect = [
        "items-domain must not depend on tokio* (",
        "items-domain must not depend on time-ext (its only dependencies are thiserror and time)",
        "items-http must not depend on items-repository (",
        "items-http must not depend on tokio-postgres (only repository knows SQL",
        "items-service must not depend on items-local-gateway (",
        "items-service must not depend on items-local-cloud (",
        "items-gateway-spec must not depend on items-* (",
        "items-new is neither in SERVICE_CRATES nor in TOOL_CRATES",
        "xtask must not depend on hcl-rs (cargo xtask dev compiles none",
    ];
    for start in expect {
        assert!(
            found.iter().any(|f| f.starts_with(start)),
            "{start} in {found:#?}"
        );
    }
    for chain in [
        "items-service → items-http → items-local-gateway",
        "items-domain → time-ext → tokio",
        "items-service → items-local-cloud",
    ] {
        assert!(
            found.iter().any(|f| f.ends_with(chain)),
            "{chain} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len() + 1, "{found:#?}");
}
