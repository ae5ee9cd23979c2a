//! One API Gateway config (Swagger 2.0 YAML) for one environment and region.

use std::collections::BTreeMap;

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::checks;
use crate::convert::{self, Warnings};
use crate::env::Environment;

/// Hex digits of the content hash in a config id.
pub const HASH_LEN: usize = 10;

/// The quota metric every operation is charged to. Renaming it breaks gateways still serving an
/// older config: the render check refuses (see [`checks::quota_metrics_kept`]).
pub const REQUESTS_METRIC: &str = "requests";
/// The quota limit on [`REQUESTS_METRIC`].
pub const REQUESTS_LIMIT: &str = "requests-per-minute";

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

// ---------------------------------------------------------------------------------------------
// The Swagger 2.0 document, typed where the order of keys matters to a reader.

#[derive(Debug, Serialize)]
struct Document {
    swagger: &'static str,
    info: Info,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    schemes: Vec<&'static str>,
    produces: Vec<&'static str>,
    #[serde(rename = "x-google-endpoints", skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<Endpoint>,
    #[serde(rename = "x-google-management")]
    management: Management,
    #[serde(rename = "securityDefinitions")]
    security_definitions: BTreeMap<String, SecurityDefinition>,
    security: Vec<BTreeMap<String, Vec<String>>>,
    #[serde(serialize_with = "sorted_value")]
    tags: Value,
    paths: BTreeMap<String, BTreeMap<Method, Operation>>,
    #[serde(serialize_with = "sorted_value")]
    definitions: Value,
    #[serde(
        skip_serializing_if = "is_empty_object",
        serialize_with = "sorted_value"
    )]
    parameters: Value,
    #[serde(
        skip_serializing_if = "is_empty_object",
        serialize_with = "sorted_value"
    )]
    responses: Value,
}

/// A JSON value serialized with every object's keys in sorted order. `serde_json::Map` keeps
/// insertion order when any crate in the build switches on serde_json's `preserve_order` (a test
/// dependency does), and sorted order otherwise; the rendered bytes, and so the config id, must
/// not depend on which crates happen to share the build.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => sorted_map(map, serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// `value` as pretty JSON (two-space indent, final newline) with every object's keys sorted,
/// whatever serde_json's `preserve_order` feature: the bytes `cargo xtask render` commits.
pub fn to_sorted_json_pretty(value: &Value) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&Sorted(value))?;
    text.push('\n');
    Ok(text)
}

fn sorted_value<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

fn sorted_vec<S: Serializer>(values: &[Value], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(Sorted))
}

fn sorted_map<S: Serializer>(map: &Map<String, Value>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        out.serialize_entry(key, &Sorted(value))?;
    }
    out.end()
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_none_or(Map::is_empty)
}

#[derive(Debug, Serialize)]
struct Info {
    title: String,
    description: String,
    version: String,
}

#[derive(Debug, Serialize)]
struct Endpoint {
    name: String,
    #[serde(rename = "allowCors")]
    allow_cors: bool,
}

#[derive(Debug, Serialize)]
struct Management {
    metrics: Vec<Metric>,
    quota: QuotaLimits,
}

#[derive(Debug, Serialize)]
struct Metric {
    name: &'static str,
    #[serde(rename = "displayName")]
    display_name: &'static str,
    #[serde(rename = "valueType")]
    value_type: &'static str,
    #[serde(rename = "metricKind")]
    metric_kind: &'static str,
}

#[derive(Debug, Serialize)]
struct QuotaLimits {
    limits: Vec<Limit>,
}

#[derive(Debug, Serialize)]
struct Limit {
    name: &'static str,
    metric: &'static str,
    unit: &'static str,
    values: BTreeMap<&'static str, u32>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SecurityDefinition {
    ApiKey {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'static str,
        #[serde(rename = "in")]
        location: &'static str,
    },
    Jwt {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "authorizationUrl")]
        authorization_url: String,
        flow: &'static str,
        #[serde(rename = "x-google-issuer")]
        issuer: String,
        #[serde(rename = "x-google-jwks_uri")]
        jwks_uri: String,
        #[serde(rename = "x-google-audiences")]
        audiences: String,
    },
}

/// Swagger method keys, ordered as [`checks::METHODS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
}

impl Method {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "get" => Self::Get,
            "put" => Self::Put,
            "post" => Self::Post,
            "delete" => Self::Delete,
            "options" => Self::Options,
            "head" => Self::Head,
            "patch" => Self::Patch,
            _ => return None,
        })
    }
}

#[derive(Debug, Serialize)]
struct Operation {
    #[serde(rename = "operationId")]
    operation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    consumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    produces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "sorted_vec")]
    parameters: Vec<Value>,
    #[serde(serialize_with = "sorted_map")]
    responses: Map<String, Value>,
    /// Replaces the document's `security` for this operation (see [`GATEWAY_AUTH`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<Vec<BTreeMap<String, Vec<String>>>>,
    #[serde(rename = "x-google-backend")]
    backend: Backend,
    #[serde(rename = "x-google-quota")]
    quota: OperationQuota,
}

#[derive(Debug, Serialize)]
struct Backend {
    address: String,
    path_translation: &'static str,
    jwt_audience: String,
    deadline: f64,
}

#[derive(Debug, Serialize)]
struct OperationQuota {
    #[serde(rename = "metricCosts")]
    metric_costs: BTreeMap<&'static str, u32>,
}

// ---------------------------------------------------------------------------------------------

/// Renders the config of `env` in `region` from the OpenAPI 3.1 document `api` (the JSON of
/// `items_http::openapi()`). `previous` is the YAML last rendered for the same environment and
/// region, if any: a quota metric it declares must not disappear.
pub fn render(
    api: &Value,
    env: &Environment,
    region: &str,
    previous: Option<&str>,
) -> Result<Rendered, RenderError> {
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
    let version = api.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.1") {
        return Err(RenderError::NotOpenApi31(format!(
            "\"openapi\" is {version:?}"
        )));
    }
    // The consumer spec itself: a path Cloud Run reserves never reaches the service.
    let reserved = checks::cloud_run_reserved_paths(api);
    if !reserved.is_empty() {
        return Err(RenderError::Checks {
            file: env.file.clone(),
            region: region.name.clone(),
            problems: reserved,
        });
    }
    let mut warnings = Warnings::default();
    let paths = paths(api, env, &region.backend_url, &mut warnings)?;
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
            convert::schema(schema, &format!("definitions/{name}"), &mut warnings),
        );
    }
    let mut responses = Map::new();
    for (name, response) in sorted(&section("responses")) {
        let (converted, _) =
            convert::response(response, &format!("responses/{name}"), &mut warnings);
        responses.insert(name.clone(), converted);
    }
    let mut parameters = Map::new();
    for (name, parameter) in sorted(&section("parameters")) {
        parameters.insert(
            name.clone(),
            convert::parameter(parameter, &format!("parameters/{name}"), &mut warnings),
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

    let info = api.get("info").cloned().unwrap_or_default();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let document = Document {
        swagger: "2.0",
        info: Info {
            title: format!("{} ({} {})", text(&info, "title"), env.name, region.name),
            description: text(&info, "description"),
            version: text(&info, "version"),
        },
        host: env.managed_service.clone(),
        schemes: vec!["https"],
        produces: vec!["application/json"],
        endpoints: cors_endpoints(env, &mut warnings),
        management: management(env),
        security_definitions: security_definitions(env),
        security: security(env),
        tags: api.get("tags").cloned().unwrap_or(Value::Array(vec![])),
        paths,
        definitions: Value::Object(definitions),
        parameters: Value::Object(parameters),
        responses: Value::Object(responses),
    };

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
    let mut yaml = format!(
        "# API Gateway config of the `{env}` environment in {region} (Swagger 2.0).\n\
         # Generated by `cargo xtask render` from the route table of crates/http and\n\
         # deploy/environments/{env}.toml: do not edit by hand.\n",
        env = env.name,
        region = region.name,
    );
    // Sorted: the order in which the conversion meets them follows serde_json's map order,
    // which depends on the build's features (see [`Sorted`]).
    warnings.0.sort();
    warnings.0.dedup();
    if !warnings.0.is_empty() {
        yaml.push_str("#\n# Simplified for OpenAPI 2.0:\n");
        for warning in &warnings.0 {
            yaml.push_str(&format!("#   {}\n", warning.replace('\n', " ")));
        }
    }
    yaml.push_str(&body);
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

/// `<api>-<env>-<first HASH_LEN hex digits of sha256(yaml)>`.
pub fn config_id(api_id: &str, env: &str, yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{api_id}-{env}-{}", &hex[..HASH_LEN])
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn paths(
    api: &Value,
    env: &Environment,
    backend_url: &str,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, BTreeMap<Method, Operation>>, RenderError> {
    let empty = Map::new();
    let source = api
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = BTreeMap::new();
    let mut operation_ids = Vec::new();
    for (path, item) in sorted(source) {
        let item = item.as_object().unwrap_or(&empty);
        let shared_parameters: Vec<&Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let mut operations = BTreeMap::new();
        for (key, op) in sorted(item) {
            let Some(method) = Method::from_key(key) else {
                if !["parameters", "summary", "description"].contains(&key.as_str()) {
                    warnings.add(
                        &format!("paths/{path}/{key}"),
                        "has no 2.0 form and was left out",
                    );
                }
                continue;
            };
            let at = format!("paths/{path}/{key}");
            let operation_id = op
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            operation_ids.push(operation_id.clone());
            let mut parameters: Vec<Value> = shared_parameters
                .iter()
                .chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .iter(),
                )
                .enumerate()
                .map(|(i, p)| convert::parameter(p, &format!("{at}/parameters/{i}"), warnings))
                .collect();
            let mut consumes = Vec::new();
            if let Some(body) = op.get("requestBody") {
                let (parameter, types) =
                    convert::request_body(body, &format!("{at}/requestBody"), warnings);
                parameters.push(parameter);
                consumes = types;
            }
            let mut responses = Map::new();
            let mut produces: Vec<String> = Vec::new();
            for (status, response) in sorted(
                op.get("responses")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty),
            ) {
                let (converted, types) =
                    convert::response(response, &format!("{at}/responses/{status}"), warnings);
                responses.insert(status.clone(), converted);
                produces.extend(types);
            }
            // Shared responses ($ref) produce problem+json; name every media type in use.
            for r in responses.values() {
                if r.get("$ref").is_some() {
                    produces.push(crate::PROBLEM_JSON.to_owned());
                }
            }
            produces.sort();
            produces.dedup();
            for k in ["callbacks", "servers", "security", "deprecated"] {
                if op.get(k).is_some() {
                    warnings.add(&at, format!("{k} is not carried into the gateway config"));
                }
            }
            operations.insert(
                method,
                Operation {
                    operation_id: operation_id.clone(),
                    summary: op.get("summary").cloned(),
                    description: op.get("description").cloned(),
                    tags: op.get("tags").cloned(),
                    consumes,
                    produces,
                    parameters,
                    responses,
                    security: operation_security(op, env, &at, warnings),
                    backend: Backend {
                        address: backend_url.to_owned(),
                        path_translation: "APPEND_PATH_TO_ADDRESS",
                        jwt_audience: backend_url.to_owned(),
                        deadline: env.deadline(&operation_id),
                    },
                    quota: OperationQuota {
                        metric_costs: BTreeMap::from([(REQUESTS_METRIC, 1)]),
                    },
                },
            );
        }
        if !operations.is_empty() {
            out.insert(path.clone(), operations);
        }
    }
    for operation in env.backend.deadlines.keys() {
        if !operation_ids.contains(operation) {
            return Err(RenderError::UnknownOperation {
                file: env.file.clone(),
                operation: operation.clone(),
            });
        }
    }
    Ok(out)
}

/// The consumer spec's operation extension that relaxes the gateway's authentication for one
/// operation: `"api-key"` asks only for the API key (no JWT), so that a browser can open the
/// API reference page (`/docs`, its files and `/openapi.json`) with `?key=`.
pub const GATEWAY_AUTH: &str = "x-gateway-auth";

fn operation_security(
    op: &Value,
    env: &Environment,
    at: &str,
    warnings: &mut Warnings,
) -> Option<Vec<BTreeMap<String, Vec<String>>>> {
    match op.get(GATEWAY_AUTH)?.as_str() {
        Some("api-key") => Some(if env.auth.api_key {
            vec![BTreeMap::from([("api_key".to_owned(), Vec::new())])]
        } else {
            vec![]
        }),
        _ => {
            warnings.add(
                at,
                format!("{GATEWAY_AUTH} is not \"api-key\"; the environment's security applies"),
            );
            None
        }
    }
}

fn cors_endpoints(env: &Environment, warnings: &mut Warnings) -> Vec<Endpoint> {
    if env.cors.allow_origins.is_empty() {
        return vec![];
    }
    match &env.managed_service {
        Some(service) => vec![Endpoint {
            name: service.clone(),
            allow_cors: true,
        }],
        None => {
            warnings.add(
                "x-google-endpoints",
                "CORS is configured but managed_service is not set yet (Terraform output \
                 managed_service of the API), so preflight requests are not passed through",
            );
            vec![]
        }
    }
}

fn management(env: &Environment) -> Management {
    Management {
        metrics: vec![Metric {
            name: REQUESTS_METRIC,
            display_name: "Requests",
            value_type: "INT64",
            metric_kind: "DELTA",
        }],
        quota: QuotaLimits {
            limits: vec![Limit {
                name: REQUESTS_LIMIT,
                metric: REQUESTS_METRIC,
                unit: "1/min/{project}",
                values: BTreeMap::from([("STANDARD", env.quota.requests_per_minute)]),
            }],
        },
    }
}

fn security_definitions(env: &Environment) -> BTreeMap<String, SecurityDefinition> {
    let mut out = BTreeMap::new();
    if env.auth.api_key {
        out.insert(
            "api_key".to_owned(),
            SecurityDefinition::ApiKey {
                kind: "apiKey",
                name: "key",
                location: "query",
            },
        );
    }
    for jwt in &env.auth.jwt {
        out.insert(
            jwt.name.clone(),
            SecurityDefinition::Jwt {
                kind: "oauth2",
                // Not used by API Gateway, but Swagger 2.0 requires a URI here.
                authorization_url: if jwt.issuer.starts_with("https://") {
                    jwt.issuer.clone()
                } else {
                    jwt.jwks_uri.clone()
                },
                flow: "implicit",
                issuer: jwt.issuer.clone(),
                jwks_uri: jwt.jwks_uri.clone(),
                audiences: jwt.audiences.join(","),
            },
        );
    }
    out
}

/// An API key (for the per-consumer quota) and, when issuers are configured, a JWT from any one
/// of them: one requirement per issuer, each with the API key.
fn security(env: &Environment) -> Vec<BTreeMap<String, Vec<String>>> {
    let api_key = || env.auth.api_key.then(|| ("api_key".to_owned(), Vec::new()));
    if env.auth.jwt.is_empty() {
        return vec![api_key().into_iter().collect()];
    }
    env.auth
        .jwt
        .iter()
        .map(|jwt| {
            api_key()
                .into_iter()
                .chain([(jwt.name.clone(), Vec::new())])
                .collect()
        })
        .collect()
}
