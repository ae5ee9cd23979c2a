//! Shared by the gateway's integration tests: a stub backend that echoes what it received, and
//! gateway start-up helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use items_local_gateway::{GatewayConfig, LocalGateway, LogSink, SigningKey};
use serde_json::{Map, Value, json};

pub const FIREBASE_ISSUER: &str = "https://securetoken.google.com/local-project";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A backend that answers every request with 200 and a JSON echo of method, path (with query),
/// headers and body length; `/slow…` paths answer after 2 s.
pub struct Stub {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

async fn echo_handler(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if req.path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        headers.insert(
            name.as_str().to_owned(),
            Value::String(value.to_str().unwrap_or("<binary>").to_owned()),
        );
    }
    HttpResponse::Ok()
        .insert_header(("x-stub", "yes"))
        .json(json!({
            "method": req.method().as_str(),
            "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "headers": headers,
            "body_len": body.len(),
        }))
}

impl Stub {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(echo_handler))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, handle }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}

/// A pass-through between the gateway and a real service that records the headers of each
/// request it forwards: what the service received.
pub struct Tap {
    pub url: String,
    pub seen: Arc<Mutex<Vec<HeaderList>>>,
    handle: actix_web::dev::ServerHandle,
}

pub type HeaderList = Vec<(String, String)>;

struct TapState {
    target: String,
    seen: Arc<Mutex<Vec<HeaderList>>>,
    client: reqwest::Client,
}

async fn tap(req: HttpRequest, body: web::Bytes, state: web::Data<TapState>) -> HttpResponse {
    let headers: HeaderList = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    state.seen.lock().expect("seen").push(headers.clone());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut forward = state
        .client
        .request(method, format!("{}{path}", state.target));
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| n != "host" && n != "content-length")
    {
        forward = forward.header(name.as_str(), value.as_str());
    }
    let answer = forward
        .body(body)
        .send()
        .await
        .expect("the service answers");
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(answer.status().as_u16()).expect("status"),
    );
    for (name, value) in answer.headers() {
        if name != "content-length" {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    response.body(answer.bytes().await.expect("body"))
}

impl Tap {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        install_rustls_provider();
        let state = web::Data::new(TapState {
            target: target.to_owned(),
            seen: seen.clone(),
            client: reqwest::Client::new(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(tap))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, seen, handle }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        drop(self.handle.clone().stop(false));
    }
}

/// reqwest is built without a TLS provider of its own (no aws-lc in the build): ring it is, before
/// the first client is built, as in the service.
fn install_rustls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A gateway enforcing `config` in front of `backend_url`, logging into memory.
pub struct Gw {
    pub gateway: LocalGateway,
    pub logs: Arc<Mutex<Vec<Value>>>,
    pub client: reqwest::Client,
}

pub async fn gateway_with(
    config: PathBuf,
    backend_url: &str,
    customise: impl FnOnce(&mut GatewayConfig),
) -> Gw {
    let logs = Arc::new(Mutex::new(Vec::new()));
    install_rustls_provider();
    let mut cfg = GatewayConfig::new(config, backend_url);
    cfg.log = LogSink::Memory(logs.clone());
    cfg.gateway_service_account = "gw@local-project.iam.gserviceaccount.com".into();
    customise(&mut cfg);
    let gateway = LocalGateway::start(cfg).await.expect("gateway starts");
    Gw {
        gateway,
        logs,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// The status of a GET of `path`.
    pub async fn status(&self, path: &str) -> u16 {
        self.get(path)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("logs").clone()
    }
}

/// A gateway enforcing `tests/fixtures/fidelity.yaml` in front of a [`Stub`].
pub async fn fixture_gateway() -> (Stub, Gw) {
    let stub = Stub::start().await;
    let gw = gateway_with(fixture("fidelity.yaml"), &stub.url, |_| {}).await;
    (stub, gw)
}

/// Sends `request` and returns the [`Stub`]'s echo of it.
pub async fn echo(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200, "the request reaches the backend");
    assert_eq!(response.headers()["x-stub"], "yes");
    response.json().await.expect("echo json")
}

/// Asserts a JWT refusal: Envoy's reply and `WWW-Authenticate` (envoy `jwt_authn/filter.cc`:
/// realm = the request's URI, `error="invalid_token"` unless the JWT is missing).
pub async fn assert_jwt_refused(
    gw: &Gw,
    response: reqwest::Response,
    path: &str,
    status: u16,
    message: &str,
) {
    let headers = assert_reply(response, status, message).await;
    let realm = format!("Bearer realm=\"{}\"", gw.url(path));
    let want = if message == "Jwt is missing" {
        realm
    } else {
        format!("{realm}, error=\"invalid_token\"")
    };
    assert_eq!(headers["www-authenticate"], want.as_str());
}

/// A token of the local issuer with these claims.
pub fn token(claims: Value) -> String {
    SigningKey::local_issuer().sign(&claims).expect("sign")
}

pub fn now() -> i64 {
    items_local_gateway::keys::now_secs() as i64
}

/// A valid Firebase-style token of the fixture's first provider.
pub fn firebase_token(sub: &str) -> String {
    token(json!({
        "iss": FIREBASE_ISSUER,
        "aud": "local-project",
        "sub": sub,
        "iat": now(),
        "exp": now() + 600,
    }))
}

/// Asserts an ESPv2 local reply and returns its headers.
pub async fn assert_reply(
    response: reqwest::Response,
    status: u16,
    message: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(response.status().as_u16(), status, "status");
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "content type"
    );
    let text = response.text().await.expect("body");
    // Keys sorted, code a number (Envoy's json_format local reply).
    assert_eq!(
        text,
        serde_json::to_string(&json!({"code": status, "message": message})).expect("json"),
    );
    headers
}

/// The decoded payload of a JWT.
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}
