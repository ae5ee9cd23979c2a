//! Checks 7 and 8: the tree has every module (each with its README) and environment root, and
//! each environment root keeps its state in GCS and pins exact provider versions.

use std::path::Path;

use super::module::{Module, attribute, evaluate, label, tf_files_or_empty};

/// The directories below `deploy/terraform` that must hold a module or root.
const REQUIRED_DIRS: [&str; 11] = [
    "modules/network",
    "modules/cloudsql",
    "modules/cloudrun",
    "modules/apigateway",
    "modules/monitoring",
    "modules/deployer",
    "modules/stack",
    "envs/dev",
    "envs/stage",
    "envs/prod",
    "bootstrap",
];

/// Every directory of [`REQUIRED_DIRS`] holds `.tf` files, and each module a README.md.
pub(super) fn check_required_dirs(terraform: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in REQUIRED_DIRS {
        let dir = terraform.join(dir);
        if tf_files_or_empty(&dir)?.is_empty() {
            problems.push(format!("{} has no .tf file", dir.display()));
        }
        if dir.starts_with(terraform.join("modules")) && !dir.join("README.md").is_file() {
            problems.push(format!(
                "{} has no README.md with its inputs and outputs",
                dir.display()
            ));
        }
    }
    Ok(problems)
}

/// Each environment root keeps its state in GCS and pins exact versions of google and
/// google-beta.
pub(super) fn check_environment_roots(envs: &Path, root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    // The environments whose roots must pin their providers: deploy/facts.toml's list.
    let facts = crate::tidy::facts(root)?;
    for env in facts.values("environments")? {
        let module = Module::load(&envs.join(env), root)?;
        let terraform: Vec<&hcl::Block> = module
            .files
            .iter()
            .flat_map(|(_, body)| body.blocks())
            .filter(|b| b.identifier() == "terraform")
            .collect();
        let inner = |identifier: &str| {
            terraform
                .iter()
                .flat_map(|t| t.body().blocks())
                .find(|b| b.identifier() == identifier)
        };
        if inner("backend").map(|b| label(b, 0)).as_deref() != Some("gcs") {
            problems.push(format!("envs/{env} has no backend \"gcs\""));
        }
        let Some(providers) = inner("required_providers") else {
            problems.push(format!("envs/{env} has no required_providers"));
            continue;
        };
        for name in ["google", "google-beta"] {
            let version = attribute(providers.body(), name)
                .and_then(|e| evaluate(e, name).ok())
                .and_then(|v| v.as_object()?.get("version")?.as_str().map(str::to_owned));
            let exact = version.as_deref().is_some_and(|v| {
                v.split('.').count() == 3 && v.split('.').all(|n| n.parse::<u32>().is_ok())
            });
            if !exact {
                problems.push(format!(
                    "envs/{env} must pin {name} to an exact version, found {version:?}"
                ));
            }
        }
    }
    Ok(problems)
}
