//! One API Gateway config (Swagger 2.0 YAML) for one environment and region: the consumer spec's
//! operations (`operations`) with the environment's authentication, quota and CORS (`policy`), in
//! the typed Swagger 2.0 document (`document`), checked by [`checks`] and written with a header
//! that says where it comes from.

mod document;
mod operations;
mod policy;

use serde_json::{Map, Value};

use crate::checks;
use crate::config_id::config_id;
use crate::downgrade::{self, Warnings};
use crate::environment::{Environment, Region};
use crate::sorted_json::sorted_entries as sorted;
use crate::to_swagger2;
use document::{Document, Info};
pub use policy::{GATEWAY_AUTH, REQUESTS_LIMIT, REQUESTS_METRIC};

/// A rendered config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub env: String,
    pub region: String,
    /// The file name under `openapi/gateway/`: `<env>-<region>.yaml`.
    pub file_name: String,
    /// The YAML document, byte-identical for identical input.
    pub yaml: String,
    /// `<api>-<env>-<hash of yaml>`: at most 63 characters of `[a-z0-9-]`.
    pub config_id: String,
    /// What 2.0 could not say and was simplified (also written as comments atop the YAML).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file}: there is no region {region:?} (regions: {known})")]
    UnknownRegion {
        file: String,
        region: String,
        known: String,
    },
    #[error("the API description is not OpenAPI 3.1: {0}")]
    NotOpenApi31(String),
    #[error("{file}: backend.deadlines.{operation}: the API has no operation {operation:?}")]
    UnknownOperation { file: String, operation: String },
    #[error("{file} ({region}): the rendered config fails API Gateway's rules:\n  - {}", .problems.join("\n  - "))]
    Checks {
        file: String,
        region: String,
        problems: Vec<String>,
    },
    #[error("the previous config is not readable YAML: {0}")]
    Previous(String),
    #[error("writing YAML: {0}")]
    Yaml(String),
}

/// Renders the config of `env` in `region` from the OpenAPI 3.1 document `api` (the JSON of
/// `items_http::openapi()`). `previous` is the YAML last rendered for the same environment and
/// region, if any: a quota metric it declares must not disappear.
pub fn render(
    api: &Value,
    env: &Environment,
    region: &str,
    previous: Option<&str>,
) -> Result<Rendered, RenderError> {
    let region = checked_input(api, env, region)?;
    let mut warnings = Warnings::default();
    let document = document(api, env, region, &mut warnings)?;
    let as_json = serde_json::to_value(&document).map_err(|e| RenderError::Yaml(e.to_string()))?;
    let previous = previous
        .map(|text| {
            yaml_serde::from_str::<Value>(text).map_err(|e| RenderError::Previous(e.to_string()))
        })
        .transpose()?;
    let problems = checks::check(&as_json, previous.as_ref());
    if !problems.is_empty() {
        return Err(RenderError::Checks {
            file: env.file.clone(),
            region: region.name.clone(),
            problems,
        });
    }
    let body = yaml_serde::to_string(&document).map_err(|e| RenderError::Yaml(e.to_string()))?;
    // Sorted: the order in which the conversion meets them follows serde_json's map order,
    // which depends on the build's features (see [`crate::sorted_json`]).
    warnings.0.sort();
    warnings.0.dedup();
    let yaml = header(env, region, &warnings.0) + &body;
    let config_id = config_id(&env.api_id, &env.name, &yaml);
    Ok(Rendered {
        env: env.name.clone(),
        region: region.name.clone(),
        file_name: format!("{}-{}.yaml", env.name, region.name),
        yaml,
        config_id,
        warnings: warnings.0,
    })
}

/// Renders every region of `env`; `previous` gives the last rendered YAML of a region.
pub fn render_all(
    api: &Value,
    env: &Environment,
    previous: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Rendered>, RenderError> {
    env.regions
        .iter()
        .map(|r| render(api, env, &r.name, previous(&r.name).as_deref()))
        .collect()
}

/// The region called `region`, once `api` is known to be a 3.1 document whose paths Cloud Run
/// lets through.
fn checked_input<'a>(
    api: &Value,
    env: &'a Environment,
    region: &str,
) -> Result<&'a Region, RenderError> {
    let region = env
        .region(region)
        .ok_or_else(|| RenderError::UnknownRegion {
            file: env.file.clone(),
            region: region.to_owned(),
            known: env
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    downgrade::openapi31_version(api)
        .map_err(|version| RenderError::NotOpenApi31(format!("\"openapi\" is {version:?}")))?;
    // The consumer spec itself: a path Cloud Run reserves never reaches the service.
    let reserved = checks::cloud_run_reserved_paths(api);
    if !reserved.is_empty() {
        return Err(RenderError::Checks {
            file: env.file.clone(),
            region: region.name.clone(),
            problems: reserved,
        });
    }
    Ok(region)
}

/// The whole Swagger 2.0 document of `env` in `region`.
fn document(
    api: &Value,
    env: &Environment,
    region: &Region,
    warnings: &mut Warnings,
) -> Result<Document, RenderError> {
    let paths = operations::paths(api, env, &region.backend_url, warnings);
    let known = |id: &str| {
        paths
            .values()
            .flat_map(|operations| operations.values())
            .any(|operation| operation.operation_id == id)
    };
    if let Some(operation) = env.backend.deadlines.keys().find(|id| !known(id)) {
        return Err(RenderError::UnknownOperation {
            file: env.file.clone(),
            operation: operation.clone(),
        });
    }
    let components = Components::convert(api, warnings);
    let info = api.get("info").cloned().unwrap_or_default();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    Ok(Document {
        swagger: "2.0",
        info: Info {
            title: format!("{} ({} {})", text(&info, "title"), env.name, region.name),
            description: text(&info, "description"),
            version: text(&info, "version"),
        },
        host: env.managed_service.clone(),
        schemes: vec!["https"],
        produces: vec!["application/json"],
        endpoints: policy::cors_endpoints(env, warnings),
        management: policy::management(env),
        security_definitions: policy::security_definitions(env),
        security: policy::security(env),
        tags: api.get("tags").cloned().unwrap_or(Value::Array(vec![])),
        paths,
        definitions: Value::Object(components.definitions),
        parameters: Value::Object(components.parameters),
        responses: Value::Object(components.responses),
    })
}

/// The 3.1 `components` that 2.0 has, in their 2.0 places.
struct Components {
    definitions: Map<String, Value>,
    responses: Map<String, Value>,
    parameters: Map<String, Value>,
}

impl Components {
    fn convert(api: &Value, warnings: &mut Warnings) -> Self {
        let empty = Map::new();
        let components = api
            .get("components")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let section = |name: &str| {
            components
                .get(name)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut definitions = Map::new();
        for (name, schema) in sorted(&section("schemas")) {
            definitions.insert(
                name.clone(),
                to_swagger2::schema(schema, &format!("definitions/{name}"), warnings),
            );
        }
        let mut responses = Map::new();
        for (name, response) in sorted(&section("responses")) {
            let (converted, _) =
                to_swagger2::response(response, &format!("responses/{name}"), warnings);
            responses.insert(name.clone(), converted);
        }
        let mut parameters = Map::new();
        for (name, parameter) in sorted(&section("parameters")) {
            parameters.insert(
                name.clone(),
                to_swagger2::parameter(parameter, &format!("parameters/{name}"), warnings),
            );
        }
        for other in components.keys() {
            if !["schemas", "responses", "parameters"].contains(&other.as_str()) {
                warnings.add(
                    &format!("components/{other}"),
                    "has no 2.0 form and was left out",
                );
            }
        }
        Self {
            definitions,
            responses,
            parameters,
        }
    }
}

/// The comment atop the YAML: what it is, where it comes from, and what 2.0 simplified.
fn header(env: &Environment, region: &Region, warnings: &[String]) -> String {
    let mut yaml = format!(
        "# API Gateway config of the `{env}` environment in {region} (Swagger 2.0).\n\
         # Generated by `cargo xtask render` from the route table of crates/http and\n\
         # deploy/environments/{env}.toml: do not edit by hand.\n",
        env = env.name,
        region = region.name,
    );
    if !warnings.is_empty() {
        yaml.push_str("#\n# Simplified for OpenAPI 2.0:\n");
        for warning in warnings {
            yaml.push_str(&format!("#   {}\n", warning.replace('\n', " ")));
        }
    }
    yaml
}
