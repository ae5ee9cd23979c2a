//! The uptime check Terraform declares (deploy/terraform/modules/monitoring) passes through the
//! rendered API Gateway config: exactly its path, method and headers (an API key, no JWT), and it
//! costs no quota. Run through the local gateway (items-local-gateway), which enforces keys,
//! JWTs and quotas as ESPv2 does; the backend is a stub, since the gateway's decision is what is
//! tested here (the service's own health routes have their tests in items-http).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use actix_web::{App, HttpResponse, HttpServer, web};
use hcl::expr::{Expression, ObjectKey, Traversal, TraversalOperator};
use items_local_gateway::{GatewayConfig, LOCAL_API_KEY, LocalGateway, LogSink};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the uptime check sends: method, path and header names.
#[derive(Debug)]
struct UptimeRequest {
    method: String,
    path: String,
    headers: Vec<String>,
}

fn blocks<'a>(body: &'a hcl::Body, kind: &'a str) -> impl Iterator<Item = &'a hcl::Block> {
    body.blocks().filter(move |b| b.identifier() == kind)
}

/// The default of module variable `name`.
fn variable_default(module: &Path, name: &str) -> String {
    let body = hcl::parse(&std::fs::read_to_string(module.join("variables.tf")).unwrap()).unwrap();
    let var = blocks(&body, "variable")
        .find(|b| b.labels().first().map(|l| l.as_str()) == Some(name))
        .unwrap_or_else(|| panic!("variable {name}"));
    let default = var
        .body()
        .attributes()
        .find(|a| a.key() == "default")
        .unwrap_or_else(|| panic!("variable {name} has no default"));
    match default.expr() {
        Expression::String(s) => s.clone(),
        other => panic!("default of {name}: {other:?}"),
    }
}

/// `var.NAME` of a traversal.
fn var_name(t: &Traversal) -> Option<&str> {
    match (&t.expr, t.operators.as_slice()) {
        (Expression::Variable(v), [TraversalOperator::GetAttr(name)]) if v.as_str() == "var" => {
            Some(name.as_str())
        }
        _ => None,
    }
}

fn uptime_request() -> UptimeRequest {
    let module = root().join("deploy/terraform/modules/monitoring");
    let body = hcl::parse(&std::fs::read_to_string(module.join("main.tf")).unwrap()).unwrap();
    let check = blocks(&body, "resource")
        .find(|b| {
            b.labels().first().map(|l| l.as_str()) == Some("google_monitoring_uptime_check_config")
        })
        .expect("an uptime check");
    let http = blocks(check.body(), "http_check")
        .next()
        .expect("http_check");
    let attr = |key: &str| {
        http.body()
            .attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr())
    };
    let path = match attr("path").expect("path") {
        Expression::String(s) => s.clone(),
        Expression::Traversal(t) => variable_default(&module, var_name(t).expect("var.…")),
        other => panic!("path: {other:?}"),
    };
    let method = match attr("request_method") {
        Some(Expression::String(s)) => s.clone(),
        None => "GET".to_owned(),
        other => panic!("request_method: {other:?}"),
    };
    let headers = match attr("headers") {
        Some(Expression::Object(o)) => o
            .keys()
            .map(|k| match k {
                ObjectKey::Expression(Expression::String(s)) => s.clone(),
                ObjectKey::Identifier(i) => i.to_string(),
                other => panic!("header name {other:?}"),
            })
            .collect(),
        None => Vec::new(),
        other => panic!("headers: {other:?}"),
    };
    // No environment root or the stack overrides the path: the module's default is what runs.
    for dir in ["deploy/terraform/modules/stack", "deploy/terraform/envs"] {
        let text = walk(&root().join(dir));
        assert!(
            !text.contains("uptime_check_path"),
            "{dir} sets uptime_check_path"
        );
    }
    UptimeRequest {
        method,
        path,
        headers,
    }
}

fn walk(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text.push_str(&walk(&path));
        } else if path.extension().is_some_and(|e| e == "tf") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

/// A backend that answers 200 to everything.
fn stub_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

#[tokio::test]
async fn the_uptime_check_passes_the_gateway_with_its_key_alone_and_costs_no_quota() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let uptime = uptime_request();
    assert_eq!(uptime.headers, ["x-api-key"], "{uptime:?}");

    // dev's config as `cargo xtask render` writes it, with a quota of 2 requests a minute.
    let mut env =
        items_gateway_spec::Environment::load(&root().join("deploy/environments/dev.toml"))
            .unwrap();
    env.quota.requests_per_minute = 2;
    let api: serde_json::Value = serde_json::from_str(items_http::openapi_json()).unwrap();
    let region = env.regions[0].name.clone();
    let rendered = items_gateway_spec::render(&api, &env, &region, None).unwrap();
    let dir = std::env::temp_dir().join(format!("items-uptime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(&rendered.file_name);
    std::fs::write(&file, &rendered.yaml).unwrap();

    let mut config = GatewayConfig::new(file, stub_backend());
    config.log = LogSink::Memory(Default::default());
    config.gateway_service_account = env.gateway_service_account.clone();
    config.producer_project = env.project_id.clone();
    let gateway = LocalGateway::start(config).await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(uptime.method.as_bytes()).unwrap();
    let send = |path: &str, key: Option<&str>| {
        let mut request = client.request(method.clone(), format!("{}{path}", gateway.url()));
        if let Some(key) = key {
            request = request.header(uptime.headers[0].as_str(), key);
        }
        request.send()
    };

    let mut statuses = BTreeMap::new();
    for _ in 0..5 {
        let status = send(&uptime.path, Some(LOCAL_API_KEY))
            .await
            .unwrap()
            .status();
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(200, 5)]),
        "GET {} with {}: 5 checks, more than the quota of 2",
        uptime.path,
        uptime.headers[0]
    );
    // The key is still required there, and the JWT still everywhere else.
    assert_eq!(send(&uptime.path, None).await.unwrap().status(), 401);
    assert_eq!(
        send("/items", Some(LOCAL_API_KEY)).await.unwrap().status(),
        401
    );
    gateway.stop().await;
}
