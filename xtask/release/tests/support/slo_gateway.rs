//! A gateway URL for the local cloud's stub gateways: the local API Gateway (`items-local-gateway`) enforcing
//! the dev environment's rendered config in front of a stub items backend that answers after a
//! chosen delay. The deploy's SLO gate loads it as it would load a real gateway.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use items_gateway_spec::Environment;
use items_local_gateway::{GatewayConfig, LOCAL_API_KEY, LocalGateway, LogSink, TokenRequest};
use serde_json::json;

pub const API_KEY: &str = LOCAL_API_KEY;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dev() -> Environment {
    Environment::load(&root().join("deploy/environments/dev.toml")).unwrap()
}

/// A token the local gateway accepts for the dev config (its first JWT provider).
pub fn token() -> String {
    let env = dev();
    let jwt = &env.auth.jwt[0];
    items_local_gateway::user_token(&TokenRequest {
        issuer: jwt.issuer.clone(),
        audience: jwt.audiences[0].clone(),
        subject: "deploy-test".into(),
        lifetime_secs: 3600,
    })
    .unwrap()
}

/// The dev config of `region` as `cargo xtask render` writes it, with a quota the load cannot
/// reach (the committed one allows 600 requests a minute).
fn config(region: &str) -> PathBuf {
    let mut env = dev();
    env.quota.requests_per_minute = 1_000_000_000;
    let spec: serde_json::Value = serde_json::from_str(items_http::openapi_json()).unwrap();
    let rendered = items_gateway_spec::render(&spec, &env, region, None).unwrap();
    let dir = std::env::temp_dir().join(format!("xtask-slo-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(rendered.file_name);
    std::fs::write(&path, rendered.yaml).unwrap();
    path
}

fn item() -> serde_json::Value {
    json!({"id": 1, "name": "stub", "description": null,
           "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"})
}

/// The items routes the load uses, each answered after `delay`.
async fn items(req: HttpRequest, delay: web::Data<Duration>) -> HttpResponse {
    tokio::time::sleep(**delay).await;
    match (req.method().as_str(), req.path()) {
        ("GET", "/items") => HttpResponse::Ok().json(json!({"items": [item()]})),
        ("POST", "/items") => HttpResponse::Created().json(item()),
        ("GET", p) if p.starts_with("/items/") => HttpResponse::Ok().json(item()),
        _ => HttpResponse::NotFound().finish(),
    }
}

/// Starts a stub backend answering after `delay` and the local gateway (dev config of `region`)
/// in front of it, on a thread of their own; returns the gateway's URL.
pub fn start(region: &str, delay: Duration) -> String {
    let config = config(region);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let backend = format!("http://{}", listener.local_addr().unwrap());
            let stub = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(delay))
                    .default_service(web::to(items))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tokio::spawn(stub);
            let mut gateway = GatewayConfig::new(config, backend);
            gateway.log = LogSink::Off;
            gateway.workers = 1;
            let gateway = LocalGateway::start(gateway).await.unwrap();
            tx.send(gateway.url()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}
