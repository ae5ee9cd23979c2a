//! The consumer spec and the server agree: every spec operation is served, every other method on
//! a spec path is a 405 naming exactly the spec's methods, nothing outside the spec is served,
//! `/openapi.json` serves the spec, and the committed copy is what the code generates (the
//! independent validator runs on it in items-gateway-spec's tests and .ci/run).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, test as atest, web};
use items_http::{ApiState, PageTokenCodec, openapi, openapi_json};
use items_memstore::MemStore;
use serde_json::Value;

/// A store that is always down: every handler that reaches it answers 503, which proves the
/// request was routed to a handler (not a 404 or 405 fallback).
fn state() -> web::Data<ApiState<MemStore>> {
    let store = MemStore::new();
    store.set_down(true);
    web::Data::new(ApiState::new(store, PageTokenCodec::new(b"test key")))
}

fn spec() -> Value {
    serde_json::from_str(openapi_json()).expect("the spec is JSON")
}

/// `(path, method)` of every operation in the spec.
fn spec_operations() -> Vec<(String, Method)> {
    let spec = spec();
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                out.push((path.clone(), m));
            }
        }
    }
    assert!(!out.is_empty(), "the spec has no operations");
    out
}

/// A concrete URL for a path template, and a body that passes parsing for the method.
fn concrete(path: &str) -> String {
    path.replace("{id}", "7").replace("{asset}", "docs.js")
}

const ALL_METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"];

#[actix_web::test]
async fn every_spec_operation_is_served_by_a_handler() {
    let app = atest::init_service(App::new().configure(items_http::configure(state()))).await;
    for (path, method) in spec_operations() {
        let mut req = atest::TestRequest::default()
            .method(method.clone())
            .uri(&concrete(&path));
        if method == Method::POST || method == Method::PATCH {
            req = req
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(r#"{"name": "a name"}"#);
        }
        let response = atest::call_service(&app, req.to_request()).await;
        let status = response.status();
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is in the spec but the server answers {status}"
        );
    }
}

#[actix_web::test]
async fn methods_outside_the_spec_are_405_with_the_spec_methods_in_allow() {
    let app = atest::init_service(App::new().configure(items_http::configure(state()))).await;
    let operations = spec_operations();
    let paths: BTreeSet<&str> = operations.iter().map(|(p, _)| p.as_str()).collect();
    for path in paths {
        let spec_methods: Vec<&str> = operations
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.as_str())
            .collect();
        for method in ALL_METHODS.iter().filter(|m| !spec_methods.contains(m)) {
            let req = atest::TestRequest::default()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&concrete(path))
                .to_request();
            let response = atest::call_service(&app, req).await;
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is not in the spec, so the server must not serve it"
            );
            let allow: BTreeSet<&str> = response
                .headers()
                .get(header::ALLOW)
                .expect("a 405 names the allowed methods")
                .to_str()
                .unwrap()
                .split(", ")
                .collect();
            assert_eq!(
                allow,
                spec_methods.iter().copied().collect::<BTreeSet<_>>(),
                "Allow of {path} differs from the spec's methods"
            );
        }
    }
}

#[actix_web::test]
async fn paths_outside_the_spec_are_404() {
    let app = atest::init_service(App::new().configure(items_http::configure(state()))).await;
    for uri in [
        "/",
        "/item",
        "/items/7/extra",
        "/openapi.yaml",
        "/health/live/x",
    ] {
        let req = atest::TestRequest::get().uri(uri).to_request();
        let response = atest::call_service(&app, req).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {uri}");
    }
}

#[actix_web::test]
async fn openapi_json_is_served() {
    let app = atest::init_service(App::new().configure(items_http::configure(state()))).await;
    let req = atest::TestRequest::get()
        .uri(items_http::OPENAPI_PATH)
        .to_request();
    let response = atest::call_service(&app, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let body = atest::read_body(response).await;
    assert_eq!(std::str::from_utf8(&body).unwrap(), openapi_json());
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served["openapi"], "3.1.0");
}

#[test]
fn operation_ids_are_unique_and_errors_are_problem_json() {
    let spec = spec();
    let mut ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let name = response["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/responses/"))
                        .unwrap_or_else(|| {
                            panic!("{method} {path} {status} is not a shared problem response")
                        });
                    let shared = &spec["components"]["responses"][name];
                    assert_eq!(
                        shared["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{name} is not a problem+json response"
                    );
                }
            }
        }
    }
}

/// An operationId is a handler's name, so renaming a handler renames its operation: a response
/// link (written by hand) must still name an operation of the spec.
#[test]
fn response_links_name_operations_of_the_spec() {
    let spec = spec();
    let operations = spec["paths"].as_object().unwrap().values();
    let ids: BTreeSet<&str> = operations
        .clone()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let mut links = 0;
    for op in operations.flat_map(|item| item.as_object().unwrap().values()) {
        for response in op["responses"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
        {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.contains(target),
                    "link {name} names no operation: {target:?}"
                );
                links += 1;
            }
        }
    }
    assert!(
        links >= 3,
        "the create's links to get, update and delete are in the spec"
    );
}

#[test]
fn the_route_table_covers_the_documented_api() {
    let ops: BTreeSet<(String, String)> = spec_operations()
        .into_iter()
        .map(|(p, m)| (m.to_string(), p))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/{id}"),
        ("PATCH", "/items/{id}"),
        ("DELETE", "/items/{id}"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/{asset}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(ops, expected);
    assert_eq!(
        openapi().paths.paths.len(),
        7,
        "the typed spec and its JSON agree"
    );
}

fn committed_spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/items.openapi.json")
}

#[test]
fn committed_spec_is_up_to_date() {
    let path = committed_spec_path();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        committed == openapi_json(),
        "openapi/items.openapi.json differs from the spec the code generates; \
         run `cargo xtask render` and commit the result"
    );
}
