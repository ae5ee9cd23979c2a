//! The real tree passes, every broken fixture fails with its message.

use std::path::{Path, PathBuf};

use super::environments::check_environments;
use super::module::names_with_extension;
use super::notifications::check_notification_channels;
use super::otlp::check_otlp_endpoints;
use super::ownership::check_ownership;
use super::page_token::check_page_token_environments;
use super::roots::{check_environment_roots, check_required_dirs};
use super::{check_tree, lint};

fn repo_root() -> PathBuf {
    crate::util::project_root()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/terraform")
        .join(name)
}

fn tree_problems(dir: &Path) -> Vec<String> {
    check_tree(dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

fn assert_clean(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "deploy/terraform has problems:\n  {}",
        problems.join("\n  ")
    );
}

/// The fixture fails, and only for the expected reason.
fn assert_fails_with(problems: &[String], fixture: &str, expected: &str) {
    assert!(
        !problems.is_empty(),
        "{fixture}the broken fixture passed; expected a problem containing {expected:?}"
    );
    assert!(
        problems.iter().all(|p| p.contains(expected)),
        "{fixture}expected only problems containing {expected:?}, got:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn real_terraform_tree_passes_the_module_checks() {
    let root = repo_root();
    assert_clean(&tree_problems(&root.join("deploy/terraform")));
}

#[test]
fn real_environments_agree_with_terraform_envs() {
    let root = repo_root();
    let problems = check_environments(
        &root.join("deploy/environments"),
        &root.join("deploy/terraform/envs"),
        &root,
    )
    .expect("readable environments");
    assert_clean(&problems);
}

#[test]
fn real_tree_has_every_module_and_environment() {
    let terraform = repo_root().join("deploy/terraform");
    assert_clean(&check_required_dirs(&terraform).expect("readable tree"));
}

/// Each environment root keeps its state in GCS and pins exact provider versions.
#[test]
fn environment_roots_pin_providers_and_use_a_gcs_backend() {
    let root = repo_root();
    let envs = root.join("deploy/terraform/envs");
    assert_clean(&check_environment_roots(&envs, &root).expect("readable environment roots"));
}

#[test]
fn broken_variable_and_module_call_fixtures_fail() {
    for (name, expected) in [
        (
            "missing_variable",
            "misses required variable \"tier\" of ../shared_db",
        ),
        ("unknown_argument", "passes unknown argument \"tire\""),
        ("untyped_variable", "variable \"region\" has no type"),
        (
            "undescribed_variable",
            "variable \"region\" has no description",
        ),
    ] {
        let problems = tree_problems(&fixture(name));
        assert_fails_with(&problems, &format!("{name}: "), expected);
    }
}

#[test]
fn dangling_output_references_fail() {
    let problems = tree_problems(&fixture("dangling_output"));
    assert_eq!(problems.len(), 6, "{problems:#?}");
    for expected in [
        "refers to var.regon, but no such variable is declared",
        "refers to local.nmae, but no such local value is defined",
        "refers to google_sql_database_instance.missing.connection_name, but no such resource exists",
        "refers to data.google_project.missing, but no such data source exists",
        "refers to module.nothing.url, but no such module is called",
        "refers to module.child.nope, but ./child has no output \"nope\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "no problem contains {expected:?}: {problems:#?}"
        );
    }
}

#[test]
fn primitive_role_fails() {
    let problems = tree_problems(&fixture("primitive_role"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_fails_with(&problems, "", "grants the primitive role \"roles/");
}

#[test]
fn public_invoker_fails() {
    let problems = tree_problems(&fixture("public_invoker"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_fails_with(&problems, "", "nothing may be public");
}

#[test]
fn environment_mismatch_fails() {
    let root = fixture("env_mismatch");
    let problems = check_environments(
        &root.join("environments"),
        &root.join("terraform/envs"),
        &root,
    )
    .expect("readable fixture");
    let expected = [
        "terraform/envs/dev: project_id is \"items-dev-0000\" but environments/dev.toml says \"items-dev-4821\"",
        "terraform/envs/dev: gateway_id of us-central1 is \"items-dev-us\" but environments/dev.toml says \"items-dev-usc1\"",
        "terraform/envs/dev: the region list is \"europe-west1, us-central1\" but environments/dev.toml says \"europe-west1, us-central1, us-east1\"",
        "terraform/envs/dev: the gateway service account is \"items-gw@items-dev-0000.iam.gserviceaccount.com\" but environments/dev.toml says \"items-gateway@items-dev-4821.iam.gserviceaccount.com\"",
        "environments/stage.toml has no Terraform root terraform/envs/stage",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p == e),
            "missing problem {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn every_environment_generates_and_mounts_its_page_token_key() {
    let root = repo_root();
    let envs = root.join("deploy/terraform/envs");
    assert_eq!(
        names_with_extension(&envs, "").expect("readable envs"),
        ["dev", "prod", "stage"].map(String::from).into(),
    );
    assert_clean(&check_page_token_environments(&envs, &root).expect("readable envs"));
}

#[test]
fn an_environment_that_does_not_mount_its_page_token_key_fails() {
    let root = fixture("no_page_token_mount");
    let problems =
        check_page_token_environments(&root.join("envs"), &root).expect("readable fixture");
    assert_eq!(
        problems,
        [
            "envs/dev (modules/cloudrun): the app container does not mount volume \"page-token\" (the page-token key)"
        ],
    );
}

#[test]
fn an_environment_that_signs_with_the_latest_page_token_key_fails() {
    let root = fixture("page_token_latest");
    let problems =
        check_page_token_environments(&root.join("envs"), &root).expect("readable fixture");
    assert_eq!(
        problems,
        [
            "envs/dev (modules/cloudrun): the signing page-token key (/page-token/current) is mounted as version \"latest\"; pin it (page_token_signing_key_version): instances started after a new version would sign with a key the others reject"
        ],
    );
}

#[test]
fn every_environment_exports_to_the_collectors_otlp_http_port() {
    let root = repo_root();
    let problems = check_otlp_endpoints(
        &root.join("deploy/terraform/envs"),
        &root.join("deploy/otel/collector.yaml"),
        &root,
    )
    .expect("readable envs and collector config");
    assert_clean(&problems);
}

#[test]
fn an_endpoint_on_the_collectors_grpc_port_fails() {
    let root = fixture("otlp_grpc_port");
    let problems =
        check_otlp_endpoints(&root.join("envs"), &root.join("otel/collector.yaml"), &root)
            .expect("readable fixture");
    assert_eq!(
        problems,
        [
            "envs/dev (modules/cloudrun): OTEL_EXPORTER_OTLP_ENDPOINT is \"http://localhost:4317\", the collector's gRPC port, but the service speaks OTLP/HTTP; the collector's OTLP/HTTP receiver listens on port 4318 (otel/collector.yaml)"
        ],
    );
}

/// What `cargo xtask lint terraform` runs: every check above, together, over the real tree.
#[test]
fn the_lint_command_passes_on_the_real_tree() {
    assert_clean(&lint(&repo_root()).expect("readable tree"));
}

#[test]
fn every_environment_sends_its_alerts_somewhere() {
    let root = repo_root();
    let envs = root.join("deploy/terraform/envs");
    assert_clean(&check_notification_channels(&envs, &root).expect("readable envs"));
}

#[test]
fn an_environment_without_notification_channels_fails() {
    let root = fixture("no_notification_channels");
    let problems = check_notification_channels(&root.join("envs"), &root).expect("readable");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("envs/dev") && problems[0].contains("is an empty list"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("envs/prod") && problems[1].contains("which has a default"),
        "{problems:#?}"
    );
}

#[test]
fn the_real_cloud_run_module_has_one_owner_per_field() {
    let root = repo_root();
    let problems = check_ownership(
        &root.join("docs/deploy.md"),
        &root.join("deploy/terraform/modules/cloudrun"),
        &root,
    )
    .expect("readable docs and module");
    assert_clean(&problems);
}

/// Each broken fixture: the table of its deploy.md against its cloudrun/main.tf.
#[test]
fn a_field_with_two_owners_fails() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "ownership_revision_ignored",
            &[
                "ownership_revision_ignored/cloudrun: google_cloud_run_v2_service.this: lifecycle.ignore_changes has template[0].revision, which the table gives to nobody: Terraform would re-send its value from the state",
            ],
        ),
        (
            "ownership_annotations_not_ignored",
            &[
                "ownership_annotations_not_ignored/cloudrun: google_cloud_run_v2_service.this: deploy owns template[0].annotations but lifecycle.ignore_changes lacks it: the next apply would undo a deploy",
            ],
        ),
        (
            "ownership_sidecar_first",
            &[
                "ownership_sidecar_first/cloudrun: google_cloud_run_v2_service.this: template[0].containers[0].image is not the container deploy sets (container 1: named \"app\", else the one with ports, else the first)",
                "ownership_sidecar_first/cloudrun: google_cloud_run_v2_service.this: sets template[0].revision, which nobody may set",
            ],
        ),
    ];
    let base = fixture("");
    for (name, expected) in cases {
        let dir = fixture(name);
        let problems = check_ownership(&dir.join("deploy.md"), &dir.join("cloudrun"), &base)
            .expect("readable fixture");
        assert_eq!(problems, expected, "{name}");
    }
}

#[test]
fn an_attribute_of_a_counted_block_without_an_instance_fails() {
    let problems = tree_problems(&fixture("unindexed_count"));
    assert_fails_with(&problems, "unindexed_count: ", "has count or for_each");
    let text = problems.join("\n");
    assert!(
        text.contains("`google_sql_database_instance.this.name`"),
        "{text}"
    );
    assert!(text.contains("`module.child.name`"), "{text}");
    assert_eq!(problems.len(), 2, "{text}");
}
