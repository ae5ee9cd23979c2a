//! The request path through the gateway, in ESPv2's filter order (esp-v2 `filter_generator.go`):
//! limits → routing (404/405, the path matcher) → jwt_authn → service_control (API key check,
//! quota) → backend_auth → path_rewrite → router. Locally the path checks run before the ID token
//! is attached, which only matters when both fail (the local token never does).
//!
//! Each step is a module named after its ESPv2 filter. A step either hands the next one what it
//! learnt or refuses the request with a [`Refusal`]: the local reply and what ESPv2 logs for it.

mod jwt_authn;
mod limits;
mod path_rewrite;
mod router;
mod routing;
mod service_control;
mod trace;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody as _;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::GatewayConfig;
use crate::jwt;
use crate::keys::{self, SigningKey};
use crate::log::{self, Entry};
use crate::path;
use crate::quota::Quotas;
use crate::spec::Spec;

/// Shared by every worker.
#[derive(Debug)]
pub struct State {
    pub spec: Spec,
    pub config_bytes: Vec<u8>,
    pub config: GatewayConfig,
    quotas: Quotas,
    jwt_cache: jwt::Cache,
    google: SigningKey,
    /// audience → (ID token, expiry in seconds since the epoch).
    id_tokens: Mutex<HashMap<String, (String, u64)>>,
    log: log::Context,
    backend_base: String,
    consumer_number: String,
}

impl State {
    pub fn new(
        spec: Spec,
        config_bytes: Vec<u8>,
        config: GatewayConfig,
        _addr: SocketAddr,
    ) -> Self {
        let log = log::Context {
            service_name: spec.service_name().to_owned(),
            api_version: spec.version.clone(),
            config_id: config.config_id.clone(),
            producer_project: config.producer_project.clone(),
        };
        let backend_base = config.backend_url.trim_end_matches('/').to_owned();
        let digest =
            ring::digest::digest(&ring::digest::SHA256, config.producer_project.as_bytes());
        let consumer_number = digest.as_ref()[..6]
            .iter()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b))
            .to_string();
        keys::install_crypto_provider();
        Self {
            spec,
            config_bytes,
            config,
            quotas: Quotas::default(),
            jwt_cache: jwt::Cache::default(),
            google: SigningKey::local_google(),
            id_tokens: Mutex::new(HashMap::new()),
            log,
            backend_base,
            consumer_number,
        }
    }

    /// The cached backend ID token for `audience` (ESPv2 caches the token it gets from the
    /// metadata server until shortly before it expires).
    fn id_token(&self, audience: &str) -> anyhow::Result<String> {
        let now = keys::now_secs();
        let mut cache = self.id_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, exp)) = cache.get(audience)
            && *exp > now + 300
        {
            return Ok(token.clone());
        }
        let token = keys::backend_id_token(
            &self.google,
            audience,
            &self.config.gateway_service_account,
            now,
        )?;
        cache.insert(audience.to_owned(), (token.clone(), now + 3600));
        Ok(token)
    }

    fn api_method(&self, operation_id: &str) -> String {
        format!(
            "1.{}.{operation_id}",
            self.spec.service_name().replace(['.', '-'], "_")
        )
    }
}

pub fn server(
    state: Arc<State>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(state);
    // reqwest needs a rustls provider when some crate of the build enables its rustls feature
    // (the backend is plain HTTP, but the client builder insists).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(HttpServer::new(move || {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(client))
            .default_service(web::to(handle))
    })
    .workers(workers)
    .backlog(2048)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?
    .run())
}

/// An ESPv2/Envoy local reply: `{"code":<status>,"message":"..."}` as application/json.
fn local_reply(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(json!({"code": status, "message": message}).to_string())
}

/// Why a filter refused a request: the local reply and what ESPv2 logs for it.
struct Refusal {
    status: u16,
    message: Cow<'static, str>,
    /// ESPv2's `response_code_detail`.
    detail: Cow<'static, str>,
    /// ESPv2's `error_cause`, where it sets one.
    cause: Option<&'static str>,
    /// `WWW-Authenticate`, for JWT refusals.
    challenge: Option<String>,
}

impl Refusal {
    fn new(
        detail: impl Into<Cow<'static, str>>,
        status: u16,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            detail: detail.into(),
            cause: None,
            challenge: None,
        }
    }

    fn cause(self, cause: &'static str) -> Self {
        Self {
            cause: Some(cause),
            ..self
        }
    }

    /// The local reply, with the refusal recorded in the log entry.
    fn into_response(self, entry: &mut Entry) -> HttpResponse {
        entry.response_code_detail = self.detail.into_owned();
        if let Some(cause) = self.cause {
            entry.error_cause = Some(cause.to_owned());
        }
        let mut response = local_reply(self.status, &self.message);
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    client: web::Data<reqwest::Client>,
) -> HttpResponse {
    let start = Instant::now();
    let (trace_id, span_id, sampled) = trace::ids(&req);
    let mut entry = Entry {
        method: req.method().to_string(),
        url: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        remote_ip: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        user_agent: header(&req, "user-agent"),
        referer: header(&req, "referer"),
        protocol: format!("{:?}", req.version()),
        api_method: "<Unknown Operation Name>".into(),
        api_key_state: "NOT CHECKED",
        trace_id,
        span_id,
        sampled,
        ..Entry::default()
    };
    let response = match process(&req, payload, &state, &client, &mut entry).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(&mut entry),
    };
    entry.status = response.status().as_u16();
    entry.response_size = match response.body().size() {
        actix_web::body::BodySize::Sized(n) => n as usize,
        _ => 0,
    };
    entry.latency = start.elapsed();
    log::write(&state.config.log, &state.log, entry);
    response
}

/// The filters in ESPv2's order, then the backend's response.
async fn process(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    client: &reqwest::Client,
    entry: &mut Entry,
) -> Result<HttpResponse, Refusal> {
    limits::check_headers(req)?;
    let normalized = path::normalize(req.uri().path());
    let matched = routing::route(state, req, &normalized)?;
    let operation = &*matched.operation;
    entry.api_method = state.api_method(&operation.operation_id);
    let query = req.uri().query();
    let query_list = query.map(query_pairs).unwrap_or_default();

    // jwt_authn, before service_control (`filter_generator.go`).
    let jwt_route = !matched.is_cors && !operation.requirements.jwt_providers.is_empty();
    let verified = if jwt_route {
        Some(jwt_authn::authenticate(
            state,
            req,
            operation,
            &query_list,
            entry,
        )?)
    } else {
        None
    };
    let key_checked = service_control::check(state, req, &matched, &query_list, entry)?;

    let Some(backend) = &operation.backend else {
        return Err(Refusal::new(
            "no_backend",
            500,
            "The operation has no x-google-backend",
        ));
    };
    let paths = path_rewrite::rewrite(backend, normalized, query, &matched.bindings)?;
    let body = limits::read_body(payload).await?;
    entry.request_size = body.len();
    let caller = router::Caller {
        verified: verified.as_ref(),
        jwt_route,
        key_checked,
    };
    let headers = router::upstream_headers(req, state, backend, &caller, &paths, entry)
        .map_err(|e| Refusal::new("backend_auth_token_missing", 500, e))?;
    let url = format!("{}{}", state.backend_base, paths.upstream);
    let response = router::forward(client, req, backend, &url, headers, body).await?;
    entry.response_code_detail = "via_upstream".into();
    Ok(response)
}
