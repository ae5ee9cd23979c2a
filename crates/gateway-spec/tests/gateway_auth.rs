//! `x-gateway-auth: api-key` on an operation of the consumer spec: that operation's gateway
//! `security` is the API key alone (the API reference page), the others keep the environment's.

use std::path::Path;

use items_gateway_spec::{Environment, render};
use serde_json::{Value, json};

fn api() -> Value {
    let op = |id: &str| json!({"operationId": id, "responses": {"200": {"description": "ok"}}});
    let mut docs = op("get_docs");
    docs["x-gateway-auth"] = json!("api-key");
    let mut odd = op("get_odd");
    odd["x-gateway-auth"] = json!("nothing");
    json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/docs": {"get": docs}, "/items": {"get": op("list_items")}, "/odd": {"get": odd}},
    })
}

fn dev() -> Environment {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Environment::load(&root.join("deploy/environments/dev.toml")).expect("dev.toml parses")
}

#[test]
fn api_key_operations_need_no_jwt() {
    let env = dev();
    assert!(
        env.auth.api_key && !env.auth.jwt.is_empty(),
        "dev has a key and a JWT"
    );
    let rendered = render(&api(), &env, &env.regions[0].name, None).expect("renders");
    let doc: Value = yaml_serde::from_str(&rendered.yaml).expect("YAML");
    assert_eq!(
        doc["paths"]["/docs"]["get"]["security"],
        json!([{"api_key": []}])
    );
    // The others have no security of their own: the document's (key and JWT) applies.
    assert!(doc["paths"]["/items"]["get"].get("security").is_none());
    assert!(doc["security"][0].as_object().is_some_and(|r| r.len() == 2));
    // An unknown value changes nothing and says so.
    assert!(doc["paths"]["/odd"]["get"].get("security").is_none());
    assert!(
        rendered
            .warnings
            .iter()
            .any(|w| w.contains("paths//odd/get") && w.contains("x-gateway-auth")),
        "{:?}",
        rendered.warnings
    );
}

#[test]
fn without_api_keys_the_operation_is_open() {
    let mut env = dev();
    env.auth.api_key = false;
    let rendered = render(&api(), &env, &env.regions[0].name, None).expect("renders");
    let doc: Value = yaml_serde::from_str(&rendered.yaml).expect("YAML");
    assert_eq!(doc["paths"]["/docs"]["get"]["security"], json!([]));
}
