//! Built-in checks of a rendered Swagger 2.0 document, mirroring what API Gateway rejects or
//! mishandles. Each returns messages naming the place; an empty list means the document passes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// HTTP methods a Swagger 2.0 path item can hold.
pub const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// Every check; `previous` is the config last rendered for the same environment and region.
pub fn check(doc: &Value, previous: Option<&Value>) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(cloud_run_reserved_paths(doc));
    problems.extend(partial_segment_parameters(doc));
    problems.extend(external_refs(doc));
    problems.extend(port_in_host(doc));
    problems.extend(operations_without_backend(doc));
    problems.extend(duplicate_operation_ids(doc));
    problems.extend(unsupported_security(doc));
    problems.extend(allow_all(doc));
    // Without a previous config only the metric costs are checked.
    problems.extend(quota_metrics_kept(previous.unwrap_or(doc), doc));
    problems
}

fn paths(doc: &Value) -> impl Iterator<Item = (&String, &Value)> {
    doc.get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter())
}

/// `(path, method, operation)` of every operation.
pub fn operations(doc: &Value) -> Vec<(&str, &'static str, &Value)> {
    let mut out = Vec::new();
    for (path, item) in paths(doc) {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.as_str(), method, op));
            }
        }
    }
    out
}

/// Paths Cloud Run's front end may answer itself, so that the request never reaches the
/// container. Google's known issues: "You can't use the following URL paths: Paths starting
/// with /_ah/; Some paths ending with z. To prevent conflicts with reserved paths, we recommend
/// avoiding all paths that end in z" (cloud.google.com/run/docs/known-issues); an older version
/// of that page also lists `/eventlog`. `/healthz` through a `run.app` URL gets Google's HTML 404.
/// Works on the consumer spec (3.1) and on rendered configs (2.0): both have `paths`.
pub fn cloud_run_reserved_paths(doc: &Value) -> Vec<String> {
    paths(doc)
        .filter_map(|(path, _)| {
            let trimmed = path.trim_end_matches('/');
            let why = if path.starts_with("/_ah/") || path == "/_ah" {
                "starts with /_ah/"
            } else if trimmed.ends_with('z') || trimmed.ends_with('Z') {
                "ends in z"
            } else if trimmed.ends_with("/eventlog") {
                "is /eventlog"
            } else {
                return None;
            };
            Some(format!(
                "paths.{path}: the path {why}, which Cloud Run reserves (its front end may answer \
                 with its own 404 and never reach the container); choose another path"
            ))
        })
        .collect()
}

/// `/items/item_{id}` or `/items/{id}.json`: API Gateway accepts whole-segment parameters only.
pub fn partial_segment_parameters(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, _) in paths(doc) {
        for segment in path.split('/') {
            let whole = segment.starts_with('{')
                && segment.ends_with('}')
                && segment[1..segment.len() - 1]
                    .chars()
                    .all(|c| c != '{' && c != '}');
            if (segment.contains('{') || segment.contains('}')) && !whole {
                problems.push(format!(
                    "paths.{path}: the segment {segment:?} mixes a path parameter with other text; \
                     API Gateway accepts only whole-segment parameters like {{id}}"
                ));
            }
        }
    }
    problems
}

/// A `$ref` to another file or URL: API Gateway takes one self-contained document.
pub fn external_refs(doc: &Value) -> Vec<String> {
    fn walk(value: &Value, at: &str, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if k == "$ref"
                        && let Some(r) = v.as_str()
                        && !r.starts_with('#')
                    {
                        problems.push(format!(
                            "{here}: external $ref {r:?}; API Gateway accepts only references \
                             inside the document (#/definitions/…)"
                        ));
                    }
                    walk(v, &here, problems);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), problems);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(doc, "#", &mut problems);
    problems
}

/// `host: api.example.com:8443`: API Gateway rejects a port in `host`.
pub fn port_in_host(doc: &Value) -> Vec<String> {
    match doc.get("host").and_then(Value::as_str) {
        Some(host) if host.contains(':') => vec![format!(
            "host: {host:?} has a port; API Gateway rejects a port in host"
        )],
        _ => vec![],
    }
}

/// Every operation needs `x-google-backend` with an `address` and an explicit `path_translation`
/// (the document-level one counts), or API Gateway has nowhere to send it.
pub fn operations_without_backend(doc: &Value) -> Vec<String> {
    let top = doc.get("x-google-backend");
    let mut problems = Vec::new();
    for (path, method, op) in operations(doc) {
        let Some(backend) = op.get("x-google-backend").or(top) else {
            problems.push(format!(
                "paths.{path}.{method}: the operation has no x-google-backend, so API Gateway \
                 cannot route it"
            ));
            continue;
        };
        if backend.get("address").and_then(Value::as_str).is_none() {
            problems.push(format!(
                "paths.{path}.{method}: x-google-backend has no address"
            ));
        }
        if backend
            .get("path_translation")
            .and_then(Value::as_str)
            .is_none()
        {
            problems.push(format!(
                "paths.{path}.{method}: x-google-backend must set path_translation explicitly"
            ));
        }
    }
    problems
}

/// operationIds must be unique (and present): API Gateway names methods after them.
pub fn duplicate_operation_ids(doc: &Value) -> Vec<String> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, method, op) in operations(doc) {
        let here = format!("paths.{path}.{method}");
        match op.get("operationId").and_then(Value::as_str) {
            None => problems.push(format!("{here}: the operation has no operationId")),
            Some(id) => {
                if let Some(first) = seen.get(id) {
                    problems.push(format!(
                        "{here}: operationId {id:?} is already used by {first}"
                    ));
                } else {
                    seen.insert(id, here);
                }
            }
        }
    }
    problems
}

fn metric_names(doc: &Value) -> BTreeSet<String> {
    let management = doc.get("x-google-management");
    let metrics = management
        .and_then(|m| m.get("metrics"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("name").and_then(Value::as_str));
    let limits = management
        .and_then(|m| m.get("quota"))
        .and_then(|q| q.get("limits"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("metric").and_then(Value::as_str));
    metrics.chain(limits).map(str::to_owned).collect()
}

/// A quota metric renamed or removed since the previous config breaks gateways still serving
/// it; metric costs must name declared metrics.
pub fn quota_metrics_kept(previous: &Value, doc: &Value) -> Vec<String> {
    let before = metric_names(previous);
    let now = metric_names(doc);
    let mut problems: Vec<String> = before
        .difference(&now)
        .map(|m| {
            format!(
                "x-google-management: the quota metric {m:?} of the previous config is renamed \
                 or removed; gateways still serving that config would break. Keep it (add new \
                 metrics beside it)"
            )
        })
        .collect();
    for (path, method, op) in operations(doc) {
        let costs = op
            .get("x-google-quota")
            .and_then(|q| q.get("metricCosts"))
            .and_then(Value::as_object);
        for metric in costs.into_iter().flat_map(|c| c.keys()) {
            if !now.contains(metric) {
                problems.push(format!(
                    "paths.{path}.{method}: x-google-quota names the metric {metric:?}, which \
                     x-google-management does not declare"
                ));
            }
        }
    }
    problems
}

/// `security` lists API Gateway does not support ("OpenAPI 2.0 feature limitations",
/// cloud.google.com/api-gateway/docs/openapi-limitations, "Multiple Security Requirements"):
/// alternatives (OR) when one of them has an API key (an empty `- {}` beside a key alternative
/// is the documented way to make the key optional, and passes); two OAuth2 schemes ANDed in one
/// requirement; an empty requirement beside OAuth2. The top-level list and each operation's.
pub fn unsupported_security(doc: &Value) -> Vec<String> {
    let kind = |scheme: &str| {
        doc.pointer(&format!(
            "/securityDefinitions/{}",
            scheme.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
    };
    let mut lists: Vec<(String, &Value)> = Vec::new();
    if let Some(top) = doc.get("security") {
        lists.push(("security".to_owned(), top));
    }
    for (path, method, op) in operations(doc) {
        if let Some(list) = op.get("security") {
            lists.push((format!("paths.{path}.{method}.security"), list));
        }
    }
    let mut problems = Vec::new();
    for (at, list) in lists {
        let alternatives: Vec<Vec<String>> = list
            .as_array()
            .into_iter()
            .flatten()
            .map(|alt| {
                alt.as_object()
                    .into_iter()
                    .flat_map(|o| o.keys().map(|k| kind(k)))
                    .collect()
            })
            .collect();
        let non_empty = alternatives.iter().filter(|a| !a.is_empty()).count();
        let empty = alternatives.len() - non_empty;
        let has = |a: &[String], t: &str| a.iter().any(|k| k == t);
        if non_empty > 1 && alternatives.iter().any(|a| has(a, "apiKey")) {
            problems.push(format!(
                "{at}: alternatives (OR) where one has an API key; API Gateway does not support \
                 them. AND the key with the others in one requirement, or make the key optional \
                 with an empty requirement (- {{}})"
            ));
        }
        if alternatives
            .iter()
            .any(|a| a.iter().filter(|k| *k == "oauth2").count() > 1)
        {
            problems.push(format!(
                "{at}: two OAuth2 schemes ANDed in one requirement; API Gateway does not support \
                 that. List them as alternatives (OR)"
            ));
        }
        if empty > 0 && alternatives.iter().any(|a| has(a, "oauth2")) {
            problems.push(format!(
                "{at}: an empty requirement (- {{}}) beside OAuth2; API Gateway supports optional \
                 security for API keys only"
            ));
        }
    }
    problems
}

/// `x-google-allow: all` passes calls outside the config to the backend with no key or JWT
/// check ("OpenAPI 2.0 extensions in API Gateway", cloud.google.com/api-gateway/docs/oasv2-extensions).
/// API Gateway accepts it; this project does not render it, and the local gateway does not
/// emulate it, so a config with it is refused rather than tested locally in a form it would not
/// have on Google Cloud.
pub fn allow_all(doc: &Value) -> Vec<String> {
    match doc.get("x-google-allow") {
        Some(v) if v.as_str() != Some("configured") => vec![format!(
            "x-google-allow: {v}; calls outside the config would reach the backend without key \
             or JWT checks, which the local gateway does not emulate. Leave it out (the default \
             is configured)"
        )],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(security: Value) -> Value {
        json!({
            "swagger": "2.0",
            "securityDefinitions": {
                "api_key": {"type": "apiKey", "name": "key", "in": "query"},
                "firebase": {"type": "oauth2", "flow": "implicit", "authorizationUrl": "",
                    "x-google-issuer": "https://securetoken.google.com/p"},
                "custom": {"type": "oauth2", "flow": "implicit", "authorizationUrl": "",
                    "x-google-issuer": "https://custom.example"},
            },
            "paths": {"/items": {"get": {"operationId": "list", "security": security}}},
        })
    }

    /// Each case of "Multiple Security Requirements" in API Gateway's "OpenAPI 2.0 feature
    /// limitations" (cloud.google.com/api-gateway/docs/openapi-limitations).
    #[test]
    fn security_api_gateway_does_not_support_is_refused() {
        for (security, refused) in [
            // "conjunctions (logical AND) are supported ... both an API key and an OAuth2 token"
            (json!([{"api_key": [], "firebase": []}]), None),
            // "Alternative (logical OR) ... supported for different OAuth2 security schemes"
            (json!([{"firebase": []}, {"custom": []}]), None),
            // "An empty security requirement (- {}) can be used to make security optional for
            // an API key"
            (json!([{"api_key": []}, {}]), None),
            (json!([]), None),
            (json!([{"api_key": []}]), None),
            // "does not support alternative (logical OR) ... if one of the schemes is an API key"
            (
                json!([{"api_key": []}, {"firebase": []}]),
                Some("alternatives (OR) where one has an API key"),
            ),
            (
                json!([{"api_key": [], "firebase": []}, {"custom": []}]),
                Some("alternatives (OR) where one has an API key"),
            ),
            // "Conjunctions (logical AND) ... for different OAuth2 security schemes are not supported"
            (
                json!([{"firebase": [], "custom": []}]),
                Some("two OAuth2 schemes ANDed"),
            ),
            // "... but this is not supported for OAuth"
            (
                json!([{"firebase": []}, {}]),
                Some("an empty requirement (- {}) beside OAuth2"),
            ),
        ] {
            let problems = unsupported_security(&doc(security.clone()));
            match refused {
                None => assert!(problems.is_empty(), "{security}: {problems:?}"),
                Some(text) => {
                    assert_eq!(problems.len(), 1, "{security}: {problems:?}");
                    assert!(
                        problems[0].starts_with("paths./items.get.security: "),
                        "{problems:?}"
                    );
                    assert!(problems[0].contains(text), "{security}: {problems:?}");
                }
            }
        }
        // The top-level list too, and check() reports it.
        let mut d = doc(json!([{"api_key": []}]));
        d["security"] = json!([{"api_key": []}, {"firebase": []}]);
        let all = check(&d, None);
        assert!(
            all.iter()
                .any(|p| p.starts_with("security: alternatives (OR)")),
            "{all:?}"
        );
    }

    #[test]
    fn x_google_allow_all_is_refused() {
        let mut d = doc(json!([]));
        assert!(allow_all(&d).is_empty());
        d["x-google-allow"] = json!("configured");
        assert!(allow_all(&d).is_empty());
        d["x-google-allow"] = json!("all");
        let problems = check(&d, None);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("x-google-allow: \"all\"")),
            "{problems:?}"
        );
    }
}
