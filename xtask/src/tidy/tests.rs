//! Tidy's checks: each fixture under xtask/tests/fixtures/tidy fails with one line, the workspace
//! passes, and a changed fact reaches (fails the check of) Terraform, the sidecar and the gateway
//! configs.

use std::path::{Path, PathBuf};

use super::*;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tidy")
        .join(case)
}

/// The one problem tidy reports for a fixture, printed as `cargo xtask tidy --root` would.
fn one_problem(case: &str) -> String {
    let problems = check(&fixture(case), &[]).expect("tidy runs");
    for p in &problems {
        eprintln!("{case}: {p}");
    }
    assert_eq!(problems.len(), 1, "{case}: {problems:#?}");
    problems[0].to_string()
}

#[test]
fn a_dangling_path_fails() {
    assert_eq!(
        one_problem("dangling_path"),
        "README.md:3: names `xtask/src/tidy.rs`, which does not exist"
    );
}

#[test]
fn an_outside_reference_fails() {
    assert_eq!(
        one_problem("outside_reference"),
        "README.md:3: reference outside the repository: `../shared/` (name the source itself: \
         a file here or an upstream URL)"
    );
}

#[test]
fn a_module_without_a_doc_line_fails() {
    assert_eq!(
        one_problem("module_without_doc"),
        "crates/demo/src/parts.rs:1: module without a `//!` line saying what it is"
    );
}

#[test]
fn a_drifted_fact_fails() {
    assert_eq!(
        one_problem("drifted_fact"),
        "deploy/terraform/variables.tf:3: says `otelcol-google:0.122.1`, but deploy/facts.toml \
         defines collector_image as `us-docker.pkg.dev/cloud-ops-agents-artifacts/\
         google-cloud-opentelemetry-collector/otelcol-google:0.131.0`"
    );
}

#[test]
fn the_workspace_is_tidy() {
    let problems = check(&util::project_root(), &xtask_commands()).expect("tidy runs");
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(lines.is_empty(), "{}", lines.join("\n"));
}

#[test]
fn a_command_missing_from_the_tooling_docs_fails() {
    let mut commands = xtask_commands();
    assert!(commands.iter().any(|c| c == "tidy"), "{commands:?}");
    commands.push("frobnicate".into());
    let mut problems = Vec::new();
    check_tooling(&util::project_root(), &commands, &mut problems);
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["docs/tooling.md: `cargo xtask frobnicate` is a command but has no line here"]
    );
}

/// The facts of the workspace with one changed, and the files whose check then fails.
fn failing_files(change: impl FnOnce(&mut Facts)) -> BTreeSet<String> {
    let root = util::project_root();
    let mut facts = facts(&root).expect("deploy/facts.toml");
    let mut problems = Vec::new();
    let files = files(&root).expect("files");
    check_facts(&root, &files, &facts, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    change(&mut facts);
    check_facts(&root, &files, &facts, &mut problems);
    problems.into_iter().map(|p| p.file).collect()
}

fn set(facts: &mut Facts, name: &str, value: Fact) {
    *facts.facts.get_mut(name).expect("a fact of that name") = value;
}

#[test]
fn a_changed_collector_image_fails_terraform_and_the_sidecar() {
    let failing = failing_files(|f| {
        let image = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.137.0";
        set(f, "collector_image", Fact::One(image.into()));
    });
    for file in [
        "deploy/otel/sidecar.yaml",
        "deploy/terraform/modules/stack/variables.tf",
        "deploy/terraform/modules/stack/README.md",
    ] {
        assert!(failing.contains(file), "{file} not in {failing:#?}");
    }
}

#[test]
fn a_changed_health_path_fails_terraform_the_routes_and_the_gateway_configs() {
    let failing = failing_files(|f| set(f, "health_ready", Fact::One("/health/ready_v2".into())));
    for file in [
        "crates/http/src/health.rs",
        "deploy/terraform/modules/cloudrun/main.tf",
        "openapi/gateway/dev-europe-west1.yaml",
        "openapi/gateway/prod-us-central1.yaml",
    ] {
        assert!(failing.contains(file), "{file} not in {failing:#?}");
    }
}

#[test]
fn a_changed_environment_list_fails_terraform_the_configs_and_the_gateway_configs() {
    let failing = failing_files(|f| {
        let envs = ["dev", "staging", "prod"].map(String::from).to_vec();
        set(f, "environments", Fact::List(envs));
    });
    for file in [
        "deploy/terraform/envs/staging/main.tf",
        "deploy/terraform/envs",
        "deploy/environments",
        "crates/service/config",
        "crates/service/config/staging.toml",
        "openapi/gateway",
        "openapi/gateway/staging-europe-west1.yaml",
    ] {
        assert!(failing.contains(file), "{file} not in {failing:#?}");
    }
}

#[test]
fn a_changed_port_and_otlp_endpoint_fail_the_sidecar_and_terraform() {
    let failing = failing_files(|f| {
        set(f, "port", Fact::One("9090".into()));
        set(
            f,
            "otlp_endpoint",
            Fact::One("http://localhost:4317".into()),
        );
    });
    for file in [
        "deploy/otel/sidecar.yaml",
        "deploy/terraform/modules/cloudrun/main.tf",
        "crates/service/config/base.toml",
        "docker/Dockerfile",
    ] {
        assert!(failing.contains(file), "{file} not in {failing:#?}");
    }
}

#[test]
fn a_changed_page_token_mount_fails_terraform_and_the_service_config() {
    let failing = failing_files(|f| set(f, "page_token_dir", Fact::One("/keys".into())));
    for file in [
        "deploy/terraform/modules/cloudrun/main.tf",
        "crates/service/config/base.toml",
    ] {
        assert!(failing.contains(file), "{file} not in {failing:#?}");
    }
}

/// A release command may be listed as `cargo ship …` (the alias that runs xtask-release); one of
/// xtask's own may not, since `cargo ship` does not run it.
#[test]
fn the_tooling_docs_may_list_a_release_command_as_cargo_ship() {
    let root = crate::bench::TempDir::create().expect("a scratch directory");
    std::fs::create_dir_all(root.path().join("docs")).expect("docs/");
    std::fs::write(
        root.path().join(TOOLING),
        "- `cargo ship deploy --env dev`: …\n- `cargo ship dev`: …\n",
    )
    .expect("docs/tooling.md");
    let mut problems = Vec::new();
    check_tooling(root.path(), &["deploy".into(), "dev".into()], &mut problems);
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["docs/tooling.md: `cargo xtask dev` is a command but has no line here"]
    );
}

/// xtask reads its facts from deploy/facts.toml (the Terraform lint's environment roots).
#[test]
fn xtask_reads_the_environments_from_the_facts() {
    let facts = facts(&util::project_root()).expect("deploy/facts.toml");
    assert_eq!(
        facts.values("environments").unwrap(),
        ["dev", "stage", "prod"]
    );
    assert!(facts.values("no_such_fact").is_err());
}

#[test]
fn what_counts_as_a_path() {
    let crates = BTreeSet::from(["memstore".to_owned(), "http".to_owned()]);
    let path = |t: &str, quoted: bool| named_path(t, quoted, &crates);
    assert_eq!(
        path("xtask/tests/terraform.rs", false).as_deref(),
        Some("xtask/tests/terraform.rs")
    );
    assert_eq!(
        path("memstore/src/lib.rs", true).as_deref(),
        Some("memstore/src/lib.rs")
    );
    assert_eq!(
        path("crates/http/src/lib.rs:12", true).as_deref(),
        Some("crates/http/src/lib.rs")
    );
    assert_eq!(path("README.md", true).as_deref(), Some("README.md"));
    // Not paths: another repository's file, a placeholder, a URL, a bare top-level name, a
    // directory-like word without an extension in prose.
    assert_eq!(path("http/backend_auth/filter.cc", true), None);
    assert_eq!(path("openapi/gateway/<env>-<region>.yaml", true), None);
    assert_eq!(path("https://github.com/x/y", true), None);
    assert_eq!(path("README.md", false), None);
    assert_eq!(path("deploy/terraform", false), None);
}
