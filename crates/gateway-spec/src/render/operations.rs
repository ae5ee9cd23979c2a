//! The consumer spec's paths as Swagger 2.0 operations, each routed to the region's backend
//! (`x-google-backend`) and charged to the quota (`x-google-quota`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::document::{Backend, Method, Operation, Paths};
use super::policy;
use crate::downgrade::Warnings;
use crate::environment::Environment;
use crate::sorted_json::sorted_entries as sorted;
use crate::to_swagger2;

/// The media type of the API's error bodies.
const PROBLEM_JSON: &str = "application/problem+json";

/// Every operation of `api`'s paths for `env`, sent to `backend_url`.
pub(crate) fn paths(
    api: &Value,
    env: &Environment,
    backend_url: &str,
    warnings: &mut Warnings,
) -> Paths {
    let empty = Map::new();
    let source = api
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = BTreeMap::new();
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
            let source = OperationSource {
                op,
                shared_parameters: &shared_parameters,
                at: &at,
            };
            operations.insert(method, operation(&source, env, backend_url, warnings));
        }
        if !operations.is_empty() {
            out.insert(path.clone(), operations);
        }
    }
    out
}

/// One 3.1 operation with what it inherits from its path item.
struct OperationSource<'a> {
    op: &'a Value,
    /// The path item's parameters, which come before the operation's own.
    shared_parameters: &'a [&'a Value],
    /// Where it is, for warnings: `paths/<path>/<method>`.
    at: &'a str,
}

fn operation(
    source: &OperationSource<'_>,
    env: &Environment,
    backend_url: &str,
    warnings: &mut Warnings,
) -> Operation {
    let OperationSource { op, at, .. } = *source;
    let operation_id = op
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut parameters = parameters(source, warnings);
    let mut consumes = Vec::new();
    if let Some(body) = op.get("requestBody") {
        let (parameter, types) =
            to_swagger2::request_body(body, &format!("{at}/requestBody"), warnings);
        parameters.push(parameter);
        consumes = types;
    }
    let (responses, produces) = responses(op, at, warnings);
    for k in ["callbacks", "servers", "security", "deprecated"] {
        if op.get(k).is_some() {
            warnings.add(at, format!("{k} is not carried into the gateway config"));
        }
    }
    Operation {
        summary: op.get("summary").cloned(),
        description: op.get("description").cloned(),
        tags: op.get("tags").cloned(),
        consumes,
        produces,
        parameters,
        responses,
        security: policy::operation_security(op, env, at, warnings),
        backend: Backend {
            address: backend_url.to_owned(),
            path_translation: "APPEND_PATH_TO_ADDRESS",
            jwt_audience: backend_url.to_owned(),
            deadline: env.deadline(&operation_id),
        },
        quota: policy::operation_quota(op),
        operation_id,
    }
}

/// The path item's parameters, then the operation's, in 2.0 form.
fn parameters(source: &OperationSource<'_>, warnings: &mut Warnings) -> Vec<Value> {
    let own = source
        .op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    source
        .shared_parameters
        .iter()
        .copied()
        .chain(own)
        .enumerate()
        .map(|(i, p)| to_swagger2::parameter(p, &format!("{}/parameters/{i}", source.at), warnings))
        .collect()
}

/// The operation's responses in 2.0 form and every media type they produce, sorted.
fn responses(op: &Value, at: &str, warnings: &mut Warnings) -> (Map<String, Value>, Vec<String>) {
    let empty = Map::new();
    let mut responses = Map::new();
    let mut produces: Vec<String> = Vec::new();
    for (status, response) in sorted(
        op.get("responses")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
    ) {
        let (converted, types) =
            to_swagger2::response(response, &format!("{at}/responses/{status}"), warnings);
        responses.insert(status.clone(), converted);
        produces.extend(types);
    }
    // Shared responses ($ref) produce problem+json; name every media type in use.
    for r in responses.values() {
        if r.get("$ref").is_some() {
            produces.push(PROBLEM_JSON.to_owned());
        }
    }
    produces.sort();
    produces.dedup();
    (responses, produces)
}
