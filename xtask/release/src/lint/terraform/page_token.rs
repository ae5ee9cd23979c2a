//! Check 6: every environment gets its own generated page-token key in Secret Manager
//! (write-only, never an output), readable by the runtime account and mounted, pinned to a
//! version, where `APP__API__PAGE_TOKEN_SECRET_FILE` says; no secret volume takes read access from
//! the non-root user the app runs as.

use std::path::Path;

use hcl::Body;
use hcl::expr::Expression;

use super::module::{
    Module, attribute, environment_stacks, eval_string, evaluate, find_in_locals, literal_string,
    nested, string_locals,
};
use super::references::{referenced, refers_to};

/// Follows envs/<env> → modules/stack → modules/cloudrun and checks the page-token key there.
pub(super) fn check_page_token_environments(
    envs: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let (stacks, mut problems) = environment_stacks(envs, root)?;
    for stack in &stacks {
        let what = &stack.cloudrun_name;
        problems.extend(check_page_token_key(&stack.cloudrun, what));
        problems.extend(check_secret_modes(&stack.cloudrun, what));
        for (module, name) in [
            (&stack.env_module, "envs"),
            (&stack.stack, "stack"),
            (&stack.cloudrun, "cloudrun"),
        ] {
            problems.extend(check_no_secret_outputs(
                module,
                &format!("envs/{} ({name})", stack.env),
            ));
        }
    }
    Ok(problems)
}

/// What the Cloud Run module must do with the page-token key; `what` names the module.
fn check_page_token_key(module: &Module, what: &str) -> Vec<String> {
    let secret = match page_token_secret(module, what) {
        Ok(address) => address,
        Err(problem) => return vec![problem],
    };
    let mut problems = check_generated_versions(module, what, &secret);
    let template = match service_template(module, what) {
        Ok(template) => template,
        Err(problem) => {
            problems.push(problem);
            return problems;
        }
    };
    problems.extend(check_runtime_reads(module, template, what, &secret));
    if let Err(problem) = check_mounted(module, template, what, &secret) {
        problems.push(problem);
    }
    problems
}

/// The address of the one secret whose secret_id names "page-token".
fn page_token_secret(module: &Module, what: &str) -> Result<String, String> {
    let secrets: Vec<&str> = module
        .blocks_of("resource.google_secret_manager_secret")
        .into_iter()
        .filter(|(_, body)| {
            attribute(body, "secret_id")
                .and_then(|e| match e {
                    Expression::TemplateExpr(t) => Some(t.to_string()),
                    other => literal_string(other),
                })
                .is_some_and(|id| id.contains("page-token"))
        })
        .map(|(name, _)| name)
        .collect();
    let [secret] = secrets[..] else {
        return Err(format!(
            "{what}: expected one google_secret_manager_secret whose secret_id names \"page-token\", found {}",
            secrets.len()
        ));
    };
    Ok(format!("google_secret_manager_secret.{secret}"))
}

/// A version whose data is generated during apply and written write-only.
fn check_generated_versions(module: &Module, what: &str, secret: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let versions: Vec<&Body> = module
        .blocks_of("resource.google_secret_manager_secret_version")
        .into_iter()
        .filter(|(_, body)| refers_to(attribute(body, "secret"), secret))
        .map(|(_, body)| body)
        .collect();
    if versions.is_empty() {
        problems.push(format!(
            "{what}: {secret} has no google_secret_manager_secret_version"
        ));
    }
    for version in &versions {
        if attribute(version, "secret_data").is_some() {
            problems.push(format!(
                "{what}: the page-token key version sets secret_data, which Terraform keeps in its state; use secret_data_wo"
            ));
        }
        let generated = attribute(version, "secret_data_wo").is_some_and(|e| {
            referenced(e).iter().any(|r| {
                r.starts_with("ephemeral.random_password.")
                    || r.starts_with("ephemeral.random_bytes.")
            })
        });
        if !generated {
            problems.push(format!(
                "{what}: the page-token key version must take secret_data_wo from an ephemeral random_password or random_bytes"
            ));
        }
    }
    problems
}

/// The template of the module's one Cloud Run service.
fn service_template<'a>(module: &'a Module, what: &str) -> Result<&'a Body, String> {
    let services = module.blocks_of("resource.google_cloud_run_v2_service");
    let [(_, service)] = services[..] else {
        return Err(format!("{what}: expected one google_cloud_run_v2_service"));
    };
    nested(service, "template")
        .into_iter()
        .next()
        .ok_or_else(|| format!("{what}: the Cloud Run service has no template"))
}

/// The runtime account (the one the service runs as) may read the key.
fn check_runtime_reads(
    module: &Module,
    template: &Body,
    what: &str,
    secret: &str,
) -> Option<String> {
    let runtime = attribute(template, "service_account")
        .map(referenced)
        .and_then(|r| {
            r.into_iter()
                .find(|r| r.starts_with("google_service_account."))
        });
    let readable = module
        .blocks_of("resource.google_secret_manager_secret_iam_member")
        .into_iter()
        .any(|(_, body)| {
            refers_to(attribute(body, "secret_id"), secret)
                && attribute(body, "role").and_then(literal_string).as_deref()
                    == Some("roles/secretmanager.secretAccessor")
                && runtime
                    .as_deref()
                    .is_some_and(|account| refers_to(attribute(body, "member"), account))
        });
    (!readable).then(|| {
        format!(
            "{what}: the runtime service account has no roles/secretmanager.secretAccessor on {secret}"
        )
    })
}

/// Mounted into the app container at the path the service is told to read, with a pinned
/// version: instances read the key once at start-up, so `latest` would make instances started
/// after a new version sign with a key the others reject (docs/deploy.md, "Rotating secrets").
fn check_mounted(module: &Module, template: &Body, what: &str, secret: &str) -> Result<(), String> {
    let context = string_locals(module);
    let volumes = key_volumes(template, secret);
    let Some((volume, _)) = volumes.first() else {
        return Err(format!(
            "{what}: no volume of the Cloud Run service mounts {secret}"
        ));
    };
    let containers = nested(template, "containers");
    let app = containers
        .iter()
        .find(|c| attribute(c, "name").and_then(literal_string).as_deref() == Some("app"))
        .or(containers.first());
    let mounts: Vec<(String, String)> = app
        .map(|app| {
            nested(app, "volume_mounts")
                .into_iter()
                .filter_map(|m| {
                    let name = attribute(m, "name").and_then(literal_string)?;
                    let path = attribute(m, "mount_path").and_then(|p| eval_string(p, &context))?;
                    Some((name, path))
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(path) = find_in_locals(module, "APP__API__PAGE_TOKEN_SECRET_FILE")
        .and_then(|e| eval_string(e, &context))
    else {
        return Err(format!(
            "{what}: no APP__API__PAGE_TOKEN_SECRET_FILE (a string) in the app's environment"
        ));
    };
    let mut mounted = Vec::new();
    for (name, secret_block) in &volumes {
        let Some((_, mount)) = mounts.iter().find(|(m, _)| m == name) else {
            continue;
        };
        for item in nested(secret_block, "items") {
            let Some(file) = attribute(item, "path").and_then(|p| eval_string(p, &context)) else {
                continue;
            };
            let full = format!("{}/{file}", mount.trim_end_matches('/'));
            if full == path {
                let latest = attribute(item, "version")
                    .and_then(literal_string)
                    .is_some_and(|v| v == "latest");
                return if latest {
                    Err(format!(
                        "{what}: the signing page-token key ({path}) is mounted as version \"latest\"; pin it (page_token_signing_key_version): instances started after a new version would sign with a key the others reject"
                    ))
                } else {
                    Ok(())
                };
            }
            mounted.push(full);
        }
    }
    if mounts.iter().all(|(m, _)| m != volume) && mounted.is_empty() {
        return Err(format!(
            "{what}: the app container does not mount volume \"{volume}\" (the page-token key)"
        ));
    }
    Err(format!(
        "{what}: APP__API__PAGE_TOKEN_SECRET_FILE is \"{path}\" but the key is mounted at {}",
        mounted
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// (volume name, its `secret` block) of each volume holding versions of `secret`.
fn key_volumes<'a>(template: &'a Body, secret: &str) -> Vec<(String, &'a Body)> {
    nested(template, "volumes")
        .into_iter()
        .filter_map(|volume| {
            let secret_block = nested(volume, "secret").into_iter().next()?;
            if !refers_to(attribute(secret_block, "secret"), secret) {
                return None;
            }
            let name = attribute(volume, "name").and_then(literal_string)?;
            Some((name, secret_block))
        })
        .collect()
}

/// No output of `module` exposes a secret version or an ephemeral value.
fn check_no_secret_outputs(module: &Module, what: &str) -> Vec<String> {
    module
        .outputs
        .iter()
        .filter(|o| {
            o.value.as_ref().is_some_and(|v| {
                referenced(v).iter().any(|r| {
                    r.starts_with("google_secret_manager_secret_version.")
                        || r.starts_with("ephemeral.")
                })
            })
        })
        .map(|o| format!("{what}: output \"{}\" exposes a secret value", o.name))
        .collect()
}

/// Secret volumes are owned by root (Cloud Run's second generation and every multi-container
/// service) while the app runs as 65532 (`docker/Dockerfile`, `xtask image`), so a mode without
/// read for others (0400, 0440) makes the file unreadable: Cloud Run's default 0444 must stay.
fn check_secret_modes(module: &Module, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, service) in module.blocks_of("resource.google_cloud_run_v2_service") {
        for template in nested(service, "template") {
            for volume in nested(template, "volumes") {
                let volume_name = attribute(volume, "name")
                    .and_then(literal_string)
                    .unwrap_or_default();
                for secret in nested(volume, "secret") {
                    let mut modes = vec![("default_mode", attribute(secret, "default_mode"))];
                    modes.extend(
                        nested(secret, "items")
                            .into_iter()
                            .map(|i| ("mode", attribute(i, "mode"))),
                    );
                    for (key, mode) in modes {
                        let Some(mode) = mode else { continue };
                        let readable = evaluate(mode, key)
                            .ok()
                            .and_then(|v| v.as_u64())
                            .is_some_and(|m| m & 0o004 != 0);
                        if !readable {
                            problems.push(format!(
                                "{what}: {name} volume \"{volume_name}\" sets {key} without read for others; the app (uid 65532) cannot read a root-owned secret file"
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}
