//! Check 5: `deploy/environments/<env>.toml` and `deploy/terraform/envs/<env>` name the same
//! project, regions, service, API, gateway ids and gateway service account; the primary region
//! (Cloud SQL's, and the migrate job's, which `cargo xtask deploy` runs) is the TOML's first.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::Context as _;
use hcl::Value;
use serde::Deserialize;

use super::module::{
    Module, attribute, evaluate, label, literal_string, names_with_extension, relative,
};

#[derive(Debug, Deserialize)]
struct EnvironmentToml {
    project_id: String,
    api_id: String,
    service: String,
    gateway_service_account: String,
    regions: Vec<RegionToml>,
}

#[derive(Debug, Deserialize)]
struct RegionToml {
    name: String,
    gateway_id: String,
}

/// The arguments of the envs/<env> call of modules/stack that the TOML also names.
#[derive(Debug, Deserialize)]
struct StackCall {
    environment: String,
    project_id: String,
    service_name: String,
    api_id: String,
    gateway_account_id: String,
    regions: BTreeMap<String, StackRegion>,
    /// Set apart: older fixtures do not pass it.
    #[serde(default)]
    primary_region: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StackRegion {
    gateway_id: String,
}

pub(super) fn check_environments(
    environments: &Path,
    envs: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let tomls = names_with_extension(environments, "toml")?;
    let dirs = names_with_extension(envs, "")?;
    let mut problems = Vec::new();
    // `local` is the local cloud's environment: `cargo xtask cloud` creates its resources.
    for missing in tomls
        .difference(&dirs)
        .filter(|env| env.as_str() != "local")
    {
        problems.push(format!(
            "{}/{missing}.toml has no Terraform root {}/{missing}",
            relative(environments, root),
            relative(envs, root)
        ));
    }
    for extra in dirs.difference(&tomls) {
        problems.push(format!(
            "{}/{extra} has no {}/{extra}.toml",
            relative(envs, root),
            relative(environments, root)
        ));
    }
    for env in tomls.intersection(&dirs) {
        let toml_path = environments.join(format!("{env}.toml"));
        problems.extend(check_environment(env, &toml_path, &envs.join(env), root)?);
    }
    Ok(problems)
}

/// One environment: its TOML file against the call of modules/stack in its Terraform root.
fn check_environment(
    env: &str,
    toml_path: &Path,
    env_dir: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut differ = Differ {
        tf_name: relative(env_dir, root),
        toml_name: relative(toml_path, root),
        problems: Vec::new(),
    };
    let text =
        fs::read_to_string(toml_path).with_context(|| format!("reading {}", differ.toml_name))?;
    let toml: EnvironmentToml = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => return Ok(vec![format!("{}: {e}", differ.toml_name)]),
    };
    let module = Module::load(env_dir, root)?;
    let stack = match stack_call(&module) {
        Ok(found) => found,
        Err(e) => return Ok(vec![format!("{}: {e}", differ.tf_name)]),
    };
    differ.check("environment", &stack.environment, env);
    differ.check("project_id", &stack.project_id, &toml.project_id);
    differ.check("service_name", &stack.service_name, &toml.service);
    differ.check("api_id", &stack.api_id, &toml.api_id);
    let gateway_account = format!(
        "{}@{}.iam.gserviceaccount.com",
        stack.gateway_account_id, stack.project_id
    );
    differ.check(
        "the gateway service account",
        &gateway_account,
        &toml.gateway_service_account,
    );
    let (projects, bucket) = provider_projects_and_bucket(&module);
    for (provider, project) in projects {
        differ.check(
            &format!("provider \"{provider}\" project"),
            &project,
            &toml.project_id,
        );
    }
    if let Some(bucket) = bucket {
        differ.check(
            "the state bucket",
            &bucket,
            &format!("{}-tfstate", toml.project_id),
        );
    }
    differ.check_regions(&stack, &toml);
    if let (Some(primary), Some(first)) = (&stack.primary_region, toml.regions.first()) {
        differ.check(
            "primary_region (where deploy runs the migrate job: the TOML's first region)",
            primary,
            &first.name,
        );
    }
    Ok(differ.problems)
}

/// Collects "`what` is X but the TOML says Y" problems for one environment.
struct Differ {
    tf_name: String,
    toml_name: String,
    problems: Vec<String>,
}

impl Differ {
    fn check(&mut self, what: &str, tf: &str, toml_value: &str) {
        if tf != toml_value {
            self.problems.push(format!(
                "{}: {what} is \"{tf}\" but {} says \"{toml_value}\"",
                self.tf_name, self.toml_name
            ));
        }
    }

    fn check_regions(&mut self, stack: &StackCall, toml: &EnvironmentToml) {
        let toml_regions: BTreeMap<&str, &str> = toml
            .regions
            .iter()
            .map(|r| (r.name.as_str(), r.gateway_id.as_str()))
            .collect();
        let tf_regions: BTreeMap<&str, &str> = stack
            .regions
            .iter()
            .map(|(name, r)| (name.as_str(), r.gateway_id.as_str()))
            .collect();
        let names = |m: &BTreeMap<&str, &str>| m.keys().copied().collect::<Vec<_>>().join(", ");
        if tf_regions.keys().ne(toml_regions.keys()) {
            self.check(
                "the region list",
                &names(&tf_regions),
                &names(&toml_regions),
            );
        }
        for (region, gateway) in &tf_regions {
            if let Some(expected) = toml_regions.get(region) {
                self.check(&format!("gateway_id of {region}"), gateway, expected);
            }
        }
    }
}

fn stack_call(module: &Module) -> Result<StackCall, String> {
    let call = module
        .calls
        .iter()
        .find(|c| {
            c.source
                .as_deref()
                .is_some_and(|s| s.ends_with("modules/stack"))
        })
        .ok_or_else(|| "calls no ../../modules/stack module".to_owned())?;
    let mut object = hcl::Map::new();
    for key in [
        "environment",
        "project_id",
        "service_name",
        "api_id",
        "gateway_account_id",
        "regions",
    ] {
        let expr = call
            .arguments
            .get(key)
            .ok_or_else(|| format!("module \"{}\" does not set {key}", call.name))?;
        object.insert(key.to_owned(), evaluate(expr, key)?);
    }
    if let Some(expr) = call.arguments.get("primary_region") {
        object.insert(
            "primary_region".to_owned(),
            evaluate(expr, "primary_region")?,
        );
    }
    hcl::from_value(Value::Object(object)).map_err(|e| format!("module \"{}\": {e}", call.name))
}

/// Project ids named by the provider blocks and the GCS backend bucket of an env root.
fn provider_projects_and_bucket(module: &Module) -> (Vec<(String, String)>, Option<String>) {
    let mut projects = Vec::new();
    let mut bucket = None;
    for (_, body) in &module.files {
        for block in body.blocks() {
            match block.identifier() {
                "provider" => {
                    if let Some(p) = attribute(block.body(), "project").and_then(literal_string) {
                        projects.push((label(block, 0), p));
                    }
                }
                "terraform" => {
                    for backend in block
                        .body()
                        .blocks()
                        .filter(|b| b.identifier() == "backend")
                    {
                        bucket = attribute(backend.body(), "bucket").and_then(literal_string);
                    }
                }
                _ => {}
            }
        }
    }
    (projects, bucket)
}
