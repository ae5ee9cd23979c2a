//! Rendering: golden files, determinism, config ids, the built-in checks (each with a failing
//! input), a property test over environments and routes, and the independent Swagger 2.0
//! validator.

use std::path::{Path, PathBuf};
use std::process::Command;

use items_gateway_spec::checks;
use items_gateway_spec::{Environment, GATEWAY_REGIONS, RenderError, render, render_all};
use proptest::prelude::*;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed consumer spec; `items-http`'s tests keep it equal to what the code generates.
fn api() -> Value {
    let text = std::fs::read_to_string(root().join("openapi/items.openapi.json"))
        .expect("openapi/items.openapi.json is readable");
    serde_json::from_str(&text).expect("the consumer spec is JSON")
}

fn environment(name: &str) -> Environment {
    let mut env = Environment::load(&root().join(format!("deploy/environments/{name}.toml")))
        .expect("the environment file parses");
    env.file = format!("deploy/environments/{name}.toml");
    env
}

fn committed(env: &str, region: &str) -> Option<String> {
    std::fs::read_to_string(root().join(format!("openapi/gateway/{env}-{region}.yaml"))).ok()
}

fn parse_yaml(text: &str) -> Value {
    yaml_serde::from_str(text).expect("rendered YAML parses")
}

#[test]
fn golden_files_for_every_environment_and_region() {
    let api = api();
    let mut rendered_files = 0;
    for name in ["dev", "stage", "prod"] {
        let env = environment(name);
        assert!(env.regions.len() >= 2, "{name} has fewer than two regions");
        let all = render_all(&api, &env, |region| committed(name, region)).unwrap();
        for r in all {
            let golden = committed(name, &r.region).unwrap_or_else(|| {
                panic!(
                    "openapi/gateway/{} is missing: run `cargo xtask render`",
                    r.file_name
                )
            });
            assert!(
                golden == r.yaml,
                "openapi/gateway/{} differs from what the code renders: run `cargo xtask render`",
                r.file_name
            );
            rendered_files += 1;
        }
    }
    assert!(rendered_files >= 6);
}

#[test]
fn identical_input_gives_identical_bytes_and_id() {
    let api = api();
    let env = environment("prod");
    for region in &env.regions {
        let a = render(&api, &env, &region.name, None).unwrap();
        let b = render(&api, &env, &region.name, None).unwrap();
        assert_eq!(a, b);
        let id = &a.config_id;
        assert!(id.len() <= 63, "{id}");
        assert!(id.starts_with("items-api-prod-"), "{id}");
        assert!(!id.starts_with('-'));
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{id}"
        );
    }
}

#[test]
fn a_change_of_input_changes_the_config_id() {
    let api = api();
    let mut env = environment("dev");
    let before = render(&api, &env, "europe-west1", None).unwrap();
    env.quota.requests_per_minute += 1;
    let after = render(&api, &env, "europe-west1", None).unwrap();
    assert_ne!(before.config_id, after.config_id);
    let other_region = render(&api, &env, "us-central1", None).unwrap();
    assert_ne!(after.config_id, other_region.config_id);
}

#[test]
fn every_operation_has_backend_security_quota_and_deadline() {
    let api = api();
    let env = environment("dev");
    let r = render(&api, &env, "us-central1", None).unwrap();
    let doc = parse_yaml(&r.yaml);
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(doc["securityDefinitions"]["api_key"]["in"], "query");
    let firebase = &doc["securityDefinitions"]["firebase"];
    assert_eq!(firebase["type"], "oauth2");
    assert_eq!(firebase["flow"], "implicit");
    assert_eq!(
        firebase["x-google-issuer"],
        "https://securetoken.google.com/items-dev-4821"
    );
    assert_eq!(firebase["x-google-audiences"], "items-dev-4821");
    assert_eq!(doc["security"], json!([{"api_key": [], "firebase": []}]));
    assert_eq!(
        doc["x-google-management"]["quota"]["limits"][0]["values"]["STANDARD"],
        600
    );
    let list = &doc["paths"]["/items"]["get"];
    assert_eq!(list["x-google-backend"]["deadline"], 30.0);
    assert_eq!(
        doc["paths"]["/items"]["post"]["x-google-backend"]["deadline"],
        15.0
    );
    for (path, method, op) in checks::operations(&doc) {
        let backend = &op["x-google-backend"];
        assert_eq!(
            backend["address"], "https://items-104857600001.us-central1.run.app",
            "{method} {path}"
        );
        assert_eq!(backend["path_translation"], "APPEND_PATH_TO_ADDRESS");
        assert_eq!(backend["jwt_audience"], backend["address"]);
        assert_eq!(op["x-google-quota"]["metricCosts"]["requests"], 1);
    }
    // Parameters and bodies came across from 3.1.
    let patch = &doc["paths"]["/items/{id}"]["patch"];
    assert_eq!(
        patch["consumes"],
        json!(["application/json", "application/merge-patch+json"])
    );
    let params = patch["parameters"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header")
    );
    assert!(
        params
            .iter()
            .any(|p| p["in"] == "body" && p["schema"]["$ref"] == "#/definitions/PatchItemRequest")
    );
    assert_eq!(
        doc["paths"]["/items"]["post"]["responses"]["201"]["headers"]["Location"]["type"],
        "string"
    );
    assert_eq!(
        doc["responses"]["Unavailable"]["schema"]["$ref"],
        "#/definitions/Problem"
    );
    assert_eq!(
        doc["definitions"]["ItemResponse"]["properties"]["description"]["x-nullable"],
        true
    );
}

#[test]
fn simplifications_are_warned_about_by_name() {
    let r = render(&api(), &environment("dev"), "europe-west1", None).unwrap();
    assert!(
        r.warnings.iter().any(|w| w.starts_with(
            "definitions/ItemResponse/properties/description: type [string, null] became type string"
        )),
        "{:#?}",
        r.warnings
    );
    assert!(r.yaml.contains("# Simplified for OpenAPI 2.0:"));
}

#[test]
fn cors_with_a_managed_service_sets_host_and_allow_cors() {
    let mut env = environment("stage");
    env.managed_service =
        Some("items-api-0123456789abc.apigateway.items-stage-4821.cloud.goog".into());
    let r = render(&api(), &env, "europe-west1", None).unwrap();
    let doc = parse_yaml(&r.yaml);
    assert_eq!(
        doc["host"],
        "items-api-0123456789abc.apigateway.items-stage-4821.cloud.goog"
    );
    assert_eq!(
        doc["x-google-endpoints"],
        json!([{"name": "items-api-0123456789abc.apigateway.items-stage-4821.cloud.goog", "allowCors": true}])
    );
    // Without it, the warning says why preflights do not pass.
    env.managed_service = None;
    let r = render(&api(), &env, "europe-west1", None).unwrap();
    assert!(parse_yaml(&r.yaml).get("x-google-endpoints").is_none());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("x-google-endpoints: CORS is configured"))
    );
}

// ---------------------------------------------------------------------------------------------
// Built-in checks: each with a failing input and its message.

fn rendered_doc() -> Value {
    let rendered = render(&api(), &environment("dev"), "europe-west1", None).expect("dev renders");
    parse_yaml(&rendered.yaml)
}

fn check_messages(result: Result<items_gateway_spec::Rendered, RenderError>) -> Vec<String> {
    match result {
        Err(RenderError::Checks { problems, .. }) => problems,
        other => panic!("expected failed checks, got {other:?}"),
    }
}

#[test]
fn check_partial_segment_path_parameter() {
    let mut api = api();
    let item = api["paths"]["/items/{id}"].clone();
    api["paths"]["/items/item_{id}"] = item;
    let problems = check_messages(render(&api, &environment("dev"), "europe-west1", None));
    assert!(
        problems.iter().any(|p| p.starts_with(
            "paths./items/item_{id}: the segment \"item_{id}\" mixes a path parameter with other text"
        )),
        "{problems:#?}"
    );
}

#[test]
fn check_external_ref() {
    let mut api = api();
    api["components"]["schemas"]["ItemList"]["properties"]["items"]["items"] =
        json!({"$ref": "https://example.com/item.json"});
    let problems = check_messages(render(&api, &environment("dev"), "europe-west1", None));
    assert_eq!(
        problems,
        [
            "#/definitions/ItemList/properties/items/items/$ref: external $ref \"https://example.com/item.json\"; \
          API Gateway accepts only references inside the document (#/definitions/…)"
        ]
    );
}

#[test]
fn check_port_in_host() {
    let mut doc = rendered_doc();
    doc["host"] = json!("items.example.com:8443");
    assert_eq!(
        checks::check(&doc, None),
        ["host: \"items.example.com:8443\" has a port; API Gateway rejects a port in host"]
    );
    // The environment file cannot even say it.
    let text = std::fs::read_to_string(root().join("deploy/environments/dev.toml")).unwrap();
    let err = Environment::parse(
        "dev",
        "dev.toml",
        &text
            .lines()
            .map(|line| match line.starts_with("managed_service = ") {
                true => {
                    "managed_service = \"items-api-1.apigateway.items-dev-4821.cloud.goog:443\""
                }
                false => line,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("managed_service"), "{err}");
}

#[test]
fn check_operation_without_backend() {
    let mut doc = rendered_doc();
    doc["paths"]["/items"]["get"]
        .as_object_mut()
        .unwrap()
        .remove("x-google-backend");
    doc["paths"]["/health/live"]["get"]["x-google-backend"]
        .as_object_mut()
        .unwrap()
        .remove("path_translation");
    assert_eq!(
        checks::check(&doc, None),
        [
            "paths./health/live.get: x-google-backend must set path_translation explicitly",
            "paths./items.get: the operation has no x-google-backend, so API Gateway cannot route it",
        ]
    );
}

#[test]
fn check_paths_cloud_run_reserves() {
    // Consumer spec: rendering refuses a path that ends in z, starts with /_ah/ or is /eventlog.
    for (path, why) in [
        ("/healthz", "ends in z"),
        ("/v1/readyz/", "ends in z"),
        ("/_ah/health", "starts with /_ah/"),
        ("/eventlog", "is /eventlog"),
    ] {
        let mut api = api();
        api["paths"][path] = api["paths"]["/health/live"].clone();
        api["paths"][path]["get"]["operationId"] = json!("reserved");
        let problems = check_messages(render(&api, &environment("dev"), "europe-west1", None));
        assert_eq!(problems.len(), 1, "{path}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("paths.{path}: the path {why}")),
            "{problems:?}"
        );
    }
    // Rendered config: the same check runs over its paths.
    let mut doc = rendered_doc();
    doc["paths"]["/statz"] = doc["paths"]["/health/live"].clone();
    let problems = checks::check(&doc, None);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("paths./statz: the path ends in z")),
        "{problems:?}"
    );
    // What we serve passes: no committed route is reserved.
    assert_eq!(
        checks::cloud_run_reserved_paths(&api()),
        Vec::<String>::new()
    );
}

#[test]
fn check_duplicate_operation_ids() {
    let mut api = api();
    api["paths"]["/health/ready"]["get"]["operationId"] = json!("health_live");
    let problems = check_messages(render(&api, &environment("dev"), "europe-west1", None));
    assert_eq!(
        problems,
        [
            "paths./health/ready.get: operationId \"health_live\" is already used by paths./health/live.get"
        ]
    );
}

#[test]
fn check_quota_metric_renamed_since_the_previous_config() {
    let env = environment("dev");
    let previous = render(&api(), &env, "europe-west1", None).unwrap().yaml;
    let renamed = previous
        .replace("name: requests\n", "name: calls\n")
        .replace("metric: requests\n", "metric: calls\n");
    assert_ne!(renamed, previous);
    let problems = check_messages(render(&api(), &env, "europe-west1", Some(&renamed)));
    assert_eq!(
        problems,
        [
            "x-google-management: the quota metric \"calls\" of the previous config is renamed or \
          removed; gateways still serving that config would break. Keep it (add new metrics beside it)"
        ]
    );
    // The same config again is fine.
    render(&api(), &env, "europe-west1", Some(&previous)).unwrap();
}

#[test]
fn check_metric_cost_of_an_undeclared_metric() {
    let mut doc = rendered_doc();
    doc["paths"]["/items"]["get"]["x-google-quota"]["metricCosts"] = json!({"reads": 1});
    assert_eq!(
        checks::check(&doc, None),
        [
            "paths./items.get: x-google-quota names the metric \"reads\", which x-google-management does not declare"
        ]
    );
}

#[test]
fn deadline_for_an_unknown_operation_is_an_error() {
    let mut env = environment("dev");
    env.backend.deadlines.insert("list_itemz".into(), 10.0);
    let err = render(&api(), &env, "europe-west1", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy/environments/dev.toml: backend.deadlines.list_itemz: the API has no operation \"list_itemz\""
    );
}

#[test]
fn unknown_region_is_an_error() {
    let err = render(&api(), &environment("dev"), "us-east1", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "deploy/environments/dev.toml: there is no region \"us-east1\" (regions: europe-west1, us-central1)"
    );
}

#[test]
fn config_id_fits_api_gateway_rules() {
    let id = items_gateway_spec::config_id("items-api", "stage", "x");
    assert_eq!(id.len(), "items-api-stage-".len() + 10);
    // The environment parser refuses names that would not fit 63 characters.
    let text = std::fs::read_to_string(root().join("deploy/environments/dev.toml")).unwrap();
    let long = "a".repeat(50);
    let err = Environment::parse(
        "dev",
        "dev.toml",
        &text.replace("api_id = \"items-api\"", &format!("api_id = \"{long}\"")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("API Gateway allows 63"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Property: every route appears in every rendered config, with that region's backend.

fn arb_environment() -> impl Strategy<Value = Environment> {
    (
        proptest::sample::subsequence(GATEWAY_REGIONS.to_vec(), 1..=4),
        "[a-z][a-z0-9]{2,10}",
        1u32..100_000,
        proptest::collection::btree_map(
            proptest::sample::select(vec!["list_items", "get_item", "create_item"]),
            1.0f64..120.0,
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(regions, host, rpm, deadlines, jwt)| {
            let mut env = environment("dev");
            env.regions = regions
                .iter()
                .enumerate()
                .map(|(i, r)| items_gateway_spec::environment::Region {
                    name: (*r).to_owned(),
                    gateway_id: format!("gw-{i}"),
                    backend_url: format!("https://{host}-{i}.{r}.run.app"),
                })
                .collect();
            env.quota.requests_per_minute = rpm;
            env.backend.deadlines = deadlines
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if !jwt {
                env.auth.jwt.clear();
            }
            env
        })
}

/// Extra routes beside the real ones: whole-segment paths with distinct operation ids. Literal
/// segments end in a letter other than z (a path ending in z is one Cloud Run reserves, which
/// rendering refuses: `check_paths_cloud_run_reserves`).
fn arb_routes() -> impl Strategy<Value = Vec<(String, &'static str)>> {
    proptest::collection::btree_set(
        (
            proptest::collection::vec("[a-z]{0,7}[a-y]|\\{[a-z]{1,5}\\}", 1..4),
            proptest::sample::select(vec!["get", "post", "put", "patch", "delete"]),
        ),
        0..6,
    )
    .prop_map(|set| {
        set.into_iter()
            .map(|(segments, method)| (format!("/x/{}", segments.join("/")), method))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_route_reaches_its_regions_backend(env in arb_environment(), extra in arb_routes()) {
        let mut api = api();
        for (i, (path, method)) in extra.iter().enumerate() {
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            api["paths"][path.as_str()][*method] = json!({
                "operationId": format!("extra_{i}"),
                "parameters": params,
                "responses": {"200": {"description": "ok"}},
            });
        }
        let routes: Vec<(String, String)> = api["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, item)| {
                item.as_object().unwrap().keys().map(move |m| (p.clone(), m.clone()))
            })
            .collect();
        for r in render_all(&api, &env, |_| None).unwrap() {
            let doc = parse_yaml(&r.yaml);
            let backend_url = &env.region(&r.region).unwrap().backend_url;
            prop_assert_eq!(checks::operations(&doc).len(), routes.len());
            for (path, method) in &routes {
                let op = &doc["paths"][path.as_str()][method.as_str()];
                prop_assert!(op.is_object(), "{} {} missing in {}", method, path, r.file_name);
                prop_assert_eq!(&op["x-google-backend"]["address"], backend_url);
                prop_assert_eq!(&op["x-google-backend"]["jwt_audience"], backend_url);
                prop_assert_eq!(&op["x-google-backend"]["path_translation"], "APPEND_PATH_TO_ADDRESS");
                let id = op["operationId"].as_str().unwrap();
                prop_assert_eq!(op["x-google-backend"]["deadline"].as_f64().unwrap(), env.deadline(id));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The independent validator (PyPI openapi-spec-validator); `.ci/run` installs it.

/// Every rendered config (Swagger 2.0) and the committed consumer spec (OpenAPI 3.1, kept equal to
/// the generated one by items-http's tests).
#[test]
fn every_rendered_config_passes_openapi_spec_validator() {
    let dir = std::env::temp_dir().join(format!("items-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![root().join("openapi/items.openapi.json")];
    for name in ["dev", "stage", "prod"] {
        for r in render_all(&api(), &environment(name), |_| None).unwrap() {
            let path = dir.join(&r.file_name);
            std::fs::write(&path, &r.yaml).unwrap();
            files.push(path);
        }
    }
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "detect"])
        .args(&files)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: python3 cannot be run ({e})");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named openapi_spec_validator") {
        eprintln!(
            "skipped: openapi-spec-validator is not installed (pip install openapi-spec-validator)"
        );
        return;
    }
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects a spec:\n{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
}
