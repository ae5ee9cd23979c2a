//! Static checks of `deploy/terraform` that need no provider download (so `terraform validate`
//! cannot run here), one submodule per check:
//!
//! 1. every module call passes each required variable of a local module and nothing it does
//!    not declare ([`calls`]);
//! 2. every variable has a type and a description ([`variables`]);
//! 3. every output refers only to things that exist (resource, data, ephemeral, module and the
//!    module's output, var, local) ([`outputs`]);
//! 4. nothing grants a primitive role (roles/owner, roles/editor, roles/viewer) or public access
//!    (allUsers, allAuthenticatedUsers) ([`iam`]);
//! 5. `deploy/environments/<env>.toml` and `deploy/terraform/envs/<env>` name the same project,
//!    regions, service, API, gateway ids and gateway service account ([`environments`]);
//! 6. every environment gets its own generated page-token key in Secret Manager (write-only,
//!    never an output), readable by the runtime account and mounted where
//!    `APP__API__PAGE_TOKEN_SECRET_FILE` says; no secret volume takes read access from the
//!    non-root user the app runs as ([`page_token`]);
//! 7. every module and environment root exists, each module with a README, and each environment
//!    root keeps its state in GCS and pins exact provider versions ([`roots`]);
//! 8. every environment's Cloud Run module sets `OTEL_EXPORTER_OTLP_ENDPOINT` to the port of the
//!    collector's OTLP/HTTP receiver in `deploy/otel/collector.yaml` (4318), not its gRPC port
//!    ([`otlp`]);
//! 9. every resource and data source of the Google providers, with each nested block, matches
//!    the provider schema committed in `deploy/terraform/provider-schema/` ([`schema`]);
//! 10. every environment root passes its stack at least one notification channel, through a
//!     root variable with no default that requires one ([`notifications`]);
//! 11. one owner per field of the Cloud Run service and the migrate job: the table "Who owns
//!     which field" of `docs/deploy.md` against `modules/cloudrun`'s `ignore_changes` (every
//!     field deploy owns, nothing else), no field nobody owns set, and the ignored image being
//!     the app container's ([`ownership`]);
//! 12. every reference to an attribute of a resource, data source or module call with `count`
//!     or `for_each` names one instance (`module.db[0].url`), which `terraform validate` would
//!     otherwise refuse ([`indexed`]).
//!
//! Checks 1 to 6 and 8 to 12 each have a broken fixture under `xtask/release/tests/fixtures/terraform/` that
//! must fail with a clear message (the tests in `terraform/tests.rs`); check 7 is tested on the
//! real tree only. The real tree must pass every check.

use std::path::Path;

mod calls;
mod environments;
mod iam;
mod indexed;
mod module;
mod notifications;
mod otlp;
mod outputs;
mod ownership;
mod page_token;
mod references;
mod roots;
pub(crate) mod schema;
#[cfg(test)]
mod tests;
mod variables;

use module::{Module, ModuleCache, module_dirs};

/// Every check over the project at `repo_root`; one line per problem, none when all pass.
pub(crate) fn lint(repo_root: &Path) -> anyhow::Result<Vec<String>> {
    let terraform = repo_root.join("deploy/terraform");
    let envs = terraform.join("envs");
    let mut problems = roots::check_required_dirs(&terraform)?;
    problems.extend(check_tree(&terraform)?);
    problems.extend(environments::check_environments(
        &repo_root.join("deploy/environments"),
        &envs,
        repo_root,
    )?);
    problems.extend(roots::check_environment_roots(&envs, repo_root)?);
    problems.extend(page_token::check_page_token_environments(&envs, repo_root)?);
    problems.extend(notifications::check_notification_channels(
        &envs, repo_root,
    )?);
    problems.extend(otlp::check_otlp_endpoints(
        &envs,
        &repo_root.join("deploy/otel/collector.yaml"),
        repo_root,
    )?);
    problems.extend(schema::check_repo(repo_root)?);
    problems.extend(ownership::check_ownership(
        &repo_root.join("docs/deploy.md"),
        &terraform.join("modules/cloudrun"),
        repo_root,
    )?);
    Ok(problems)
}

/// Checks 1 to 4 and 12 over every module below `root`.
fn check_tree(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut cache = ModuleCache::new(root);
    let mut problems = Vec::new();
    for dir in module_dirs(root)? {
        let module = Module::load(&dir, root)?;
        problems.extend(calls::check_module_calls(&dir, &module, &mut cache)?);
        problems.extend(variables::check_variables(&module));
        problems.extend(outputs::check_outputs(&dir, &module, &mut cache)?);
        problems.extend(iam::check_iam(&module));
        problems.extend(indexed::check_indexed(&dir, &module, root)?);
    }
    Ok(problems)
}
