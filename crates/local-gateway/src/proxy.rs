//! The request path through the gateway, in ESPv2's filter order (esp-v2 `filter_generator.go`):
//! limits → routing (404/405, the path matcher) → jwt_authn → service_control (API key check,
//! quota) → backend_auth → path_rewrite → router. Locally the path checks run before the ID token
//! is attached, which only matters when both fail (the local token never does).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody as _;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::StreamExt as _;
use ring::rand::SecureRandom as _;
use serde_json::json;

use crate::GatewayConfig;
use crate::jwt::{self, JwtError, TokenSources};
use crate::keys::{self, SigningKey};
use crate::log::{self, Entry};
use crate::path::{self, Translation};
use crate::quota::Quotas;
use crate::spec::{Backend, Operation, Spec};

/// API Gateway's request size limit ("Quotas and limits").
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// API Gateway's request header size limit ("Quotas and limits").
pub const MAX_HEADER_BYTES: usize = 60 * 1024;
/// esp-v2 `path_rewrite/filter.cc` `PathMaxSize`.
const PATH_MAX: usize = 8192;

const USERINFO: &str = "x-apigateway-api-userinfo";

const MISSING_KEY: &str = "UNAUTHENTICATED: Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const INVALID_KEY: &str = "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.";
const CONNECT_FAILURE: &str = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111";

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

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Incoming trace context: `traceparent` first, then `X-Cloud-Trace-Context`
/// (`options/common.go`: trace propagation `traceparent,x-cloud-trace-context`).
fn trace_context(req: &HttpRequest) -> Option<(String, bool)> {
    if let Some(tp) = header(req, "traceparent") {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() == 4
            && parts[1].len() == 32
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
            && parts[1] != "00000000000000000000000000000000"
        {
            let sampled = u8::from_str_radix(parts[3], 16).is_ok_and(|f| f & 1 == 1);
            return Some((parts[1].to_ascii_lowercase(), sampled));
        }
    }
    let xctc = header(req, "x-cloud-trace-context")?;
    let (trace, rest) = xctc.split_once('/').unwrap_or((xctc.as_str(), ""));
    if trace.len() != 32 || !trace.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((trace.to_ascii_lowercase(), !rest.contains("o=0")))
}

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
    "expect",
];

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    client: web::Data<reqwest::Client>,
) -> HttpResponse {
    let start = Instant::now();
    // One draw of randomness for a new trace id and the gateway's span id.
    let mut random = [0u8; 24];
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    let (trace_id, sampled) = trace_context(&req).unwrap_or_else(|| (hex(&random[..16]), true));
    let span_id = hex(&random[16..]);
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
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        sampled,
        ..Entry::default()
    };
    let response = process(
        &req, payload, &state, &client, &mut entry, &trace_id, &span_id, sampled,
    )
    .await;
    entry.status = response.status().as_u16();
    entry.response_size = match response.body().size() {
        actix_web::body::BodySize::Sized(n) => n as usize,
        _ => 0,
    };
    entry.latency = start.elapsed();
    log::write(&state.config.log, &state.log, entry);
    response
}

#[allow(clippy::too_many_arguments)]
async fn process(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &State,
    client: &reqwest::Client,
    entry: &mut Entry,
    trace_id: &str,
    span_id: &str,
    sampled: bool,
) -> HttpResponse {
    // Limits (API Gateway "Quotas and limits"). The statuses and messages are [not confirmed]:
    // ESPv2 itself sets no body limit; these are the standard HTTP statuses in ESPv2's shape.
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        entry.response_code_detail = "request_headers_too_large".into();
        return local_reply(431, "Request Header Fields Too Large");
    }
    // ESPv2's default `headers_with_underscores_action: REJECT_REQUEST`
    // (`filtergen/http_connection_manager.go`; `http1_integration_test.go` expects 400 Bad
    // Request). Whether hosted API Gateway keeps that default, and the body, are [not confirmed].
    if req.headers().keys().any(|n| n.as_str().contains('_')) {
        entry.response_code_detail = "http1.unexpected_underscore".into();
        return local_reply(400, "Bad Request");
    }
    let declared = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        entry.response_code_detail = "request_payload_too_large".into();
        return local_reply(413, "Payload Too Large");
    }

    // Routing (esp-v2 routegen: deny_all.go, deny_invalid_method.go, proxy_cors.go).
    let raw_path = req.uri().path();
    let query = req.uri().query();
    let normalized = path::normalize(raw_path);
    let method = req.method().as_str().to_ascii_uppercase();
    let mut matched: Vec<(&crate::spec::Route, Vec<(String, String)>)> = state
        .spec
        .routes
        .iter()
        .filter_map(|r| r.template.matches(&normalized).map(|b| (r, b)))
        .collect();
    if matched.is_empty() {
        entry.response_code_detail = "direct_response".into();
        return local_reply(404, "The current request is not defined by this API.");
    }
    matched.sort_by_key(|(r, _)| std::cmp::Reverse(r.template.literal_count()));
    let with_method = matched
        .iter()
        .find(|(r, _)| r.operations.contains_key(&method));
    let cors = method == "OPTIONS" && state.spec.allow_cors;
    let (route, bindings, operation, is_cors): (_, _, Operation, bool) = match with_method {
        Some((route, b)) => (route, b.clone(), route.operations[&method].clone(), false),
        None if cors => {
            // ESPv2 adds an OPTIONS route per template to the same backend, with no API key and
            // no JWT (`routegen/proxy_cors.go`, `filtergen/service_control.go`).
            let (route, b) = &matched[0];
            let Some(first) = route.operations.values().next() else {
                entry.response_code_detail = "direct_response".into();
                return local_reply(404, "The current request is not defined by this API.");
            };
            let op = Operation {
                method: "OPTIONS".into(),
                operation_id: format!("ESPv2_Autogenerated_CORS_{}", first.operation_id),
                backend: first.backend.clone(),
                requirements: Default::default(),
                metric_costs: vec![],
            };
            (route, b.clone(), op, true)
        }
        None => {
            entry.response_code_detail = "direct_response".into();
            return local_reply(
                405,
                &format!(
                    "The current request is matched to the defined url template \"{}\" but its http method is not allowed",
                    matched[0].0.template.text
                ),
            );
        }
    };
    let _ = route;
    entry.api_method = state.api_method(&operation.operation_id);
    let query_list = query.map(query_pairs).unwrap_or_default();

    // jwt_authn, before service_control (`filter_generator.go`).
    let mut verified = None;
    if !is_cors && !operation.requirements.jwt_providers.is_empty() {
        let providers: Vec<_> = operation
            .requirements
            .jwt_providers
            .iter()
            .filter_map(|p| state.spec.providers.get(p))
            .collect();
        let get = |name: &str| header(req, name);
        let sources = TokenSources {
            header: &get,
            query: &query_list,
        };
        let result = match jwt::extract(&providers, &sources) {
            None => Err(JwtError::Missing),
            Some(token) => state.jwt_cache.verify(
                &token,
                &providers,
                state.spec.host.as_deref(),
                state.config.jwks.as_ref(),
                keys::now_secs() as i64,
            ),
        };
        match result {
            Ok(v) => {
                entry.jwt_payloads = Some(json!([{
                    "issuer": v.payload.get("iss"),
                    "subject": v.payload.get("sub"),
                    "audiences": v.payload.get("aud"),
                }]));
                verified = Some(v);
            }
            Err(e) => {
                entry.response_code_detail = format!(
                    "jwt_authn_access_denied{{{}}}",
                    e.message().replace(' ', "_")
                );
                entry.error_cause = Some("JWT".into());
                // Envoy `jwt_authn/filter.cc`: realm = the original URI (forwarded proto, host,
                // path with query); error="invalid_token" unless the JWT is missing.
                let uri = format!(
                    "{}://{}{}",
                    req.connection_info().scheme(),
                    header(req, "host").unwrap_or_default(),
                    entry.url
                );
                let challenge = if e == JwtError::Missing {
                    format!("Bearer realm=\"{uri}\"")
                } else {
                    format!("Bearer realm=\"{uri}\", error=\"invalid_token\"")
                };
                let mut response = local_reply(e.status(), e.message());
                if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(actix_web::http::header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
        }
    }

    // service_control: the key is looked for in query `key`, `api_key`, header `x-api-key`
    // (`service_control/config_parser.cc`), checked only when required.
    let api_key = ["key", "api_key"]
        .iter()
        .find_map(|k| {
            query_list
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        })
        .or_else(|| header(req, "x-api-key"));
    entry.api_key.clone_from(&api_key);
    let mut key_checked = false;
    if !is_cors && operation.requirements.api_key {
        match &api_key {
            None => {
                entry.response_code_detail = "service_control_bad_request{MISSING_API_KEY}".into();
                entry.error_cause = Some("API_KEY".into());
                return local_reply(401, MISSING_KEY);
            }
            Some(k) if !state.config.api_keys.contains(k) => {
                entry.api_key_state = "INVALID";
                entry.response_code_detail = "service_control_check_error{API_KEY_INVALID}".into();
                entry.error_cause = Some("API_KEY".into());
                return local_reply(400, INVALID_KEY);
            }
            Some(_) => {
                entry.api_key_state = "VERIFIED";
                key_checked = true;
            }
        }
    }
    let consumer = match &api_key {
        Some(k) => format!("api_key:{k}"),
        None => format!("project:{}", state.config.producer_project),
    };
    let minute = keys::now_secs() / 60;
    if let Err(exceeded) = state.quotas.allocate(
        &state.spec.limits,
        &operation.metric_costs,
        &consumer,
        minute,
    ) {
        entry.response_code_detail = "service_control_quota_error{RESOURCE_EXHAUSTED}".into();
        entry.error_cause = Some("QUOTA".into());
        // ESPv2 prefixes Service Control's QuotaError description, whose real text is
        // [not confirmed]; this one is shaped like Google's quota errors.
        return local_reply(
            429,
            &format!(
                "RESOURCE_EXHAUSTED: Quota exceeded for quota metric '{}' and limit '{}' of service '{}' for consumer '{}'.",
                exceeded.metric,
                exceeded.limit,
                state.spec.service_name(),
                exceeded.consumer
            ),
        );
    }

    let Some(backend) = operation.backend.clone() else {
        entry.response_code_detail = "no_backend".into();
        return local_reply(500, "The operation has no x-google-backend");
    };

    // path_rewrite (esp-v2 `http/path_rewrite/filter.cc`), on routes with a translation.
    let original = match query {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized.clone(),
    };
    let address_path = backend.address_path();
    let rewrites = backend.translation == Translation::ConstantAddress || !address_path.is_empty();
    if rewrites {
        if original.len() > PATH_MAX {
            entry.response_code_detail = "path_rewrite_bad_request".into();
            return local_reply(
                400,
                &format!("Path is too long, max allowed size is {PATH_MAX}."),
            );
        }
        // Unreachable in practice: the HTTP parser drops a fragment before this code sees the
        // path (kept for the day the raw target is available).
        if original.contains('#') {
            entry.response_code_detail = "path_rewrite_bad_request".into();
            return local_reply(400, "Path cannot contain fragment identifier (#)");
        }
    }
    let upstream_path = if rewrites {
        path::translate(backend.translation, address_path, &original, &bindings)
    } else {
        original.clone()
    };

    // The body, within API Gateway's 32 MB.
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            entry.response_code_detail = "downstream_remote_disconnect".into();
            return local_reply(400, "Bad Request");
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            entry.response_code_detail = "request_payload_too_large".into();
            return local_reply(413, "Payload Too Large");
        }
        body.extend_from_slice(&chunk);
    }
    entry.request_size = body.len();

    let headers = upstream_headers(
        req,
        state,
        &backend,
        verified.as_ref(),
        !is_cors && !operation.requirements.jwt_providers.is_empty(),
        key_checked,
        rewrites.then_some(original.as_str()),
        (trace_id, span_id, sampled),
    );
    let headers = match headers {
        Ok(h) => h,
        Err(e) => {
            entry.response_code_detail = "backend_auth_token_missing".into();
            return local_reply(500, &e);
        }
    };
    let url = format!("{}{}", state.backend_base, upstream_path);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let body = body.freeze();

    // The router: deadline per route, one retry on connect failure (ESPv2 defaults).
    let deadline = backend.deadline;
    let begun = Instant::now();
    let mut attempt = 0;
    let upstream = loop {
        let remaining = deadline.saturating_sub(begun.elapsed());
        let sent = client
            .request(method.clone(), &url)
            .headers(headers.clone())
            .body(reqwest::Body::from(body.clone()))
            .timeout(remaining)
            .send()
            .await;
        match sent {
            Err(e) if e.is_connect() && attempt == 0 => attempt += 1,
            other => break other,
        }
    };
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            entry.response_code_detail = "upstream_response_timeout".into();
            return local_reply(504, "upstream request timeout");
        }
        Err(e) if e.is_connect() => {
            entry.response_code_detail =
                "upstream_reset_before_response_started{remote_connection_failure}".into();
            return local_reply(503, CONNECT_FAILURE);
        }
        Err(_) => {
            // A reset after connecting: Envoy's text for it is [not confirmed] in the facts.
            entry.response_code_detail =
                "upstream_reset_before_response_started{connection_termination}".into();
            return local_reply(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            );
        }
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in upstream.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        response.append_header((name.as_str(), value.as_bytes()));
    }
    let remaining = deadline.saturating_sub(begun.elapsed());
    match tokio::time::timeout(remaining, upstream.bytes()).await {
        Ok(Ok(bytes)) => {
            entry.response_code_detail = "via_upstream".into();
            response.body(bytes)
        }
        Ok(Err(_)) => {
            entry.response_code_detail = "upstream_reset_after_response_started".into();
            local_reply(502, "upstream reset after response started")
        }
        Err(_) => {
            entry.response_code_detail = "upstream_response_timeout".into();
            local_reply(504, "upstream request timeout")
        }
    }
}

/// The headers the backend gets (gateway-facts §3).
#[allow(clippy::too_many_arguments)]
fn upstream_headers(
    req: &HttpRequest,
    state: &State,
    backend: &Backend,
    verified: Option<&std::sync::Arc<jwt::Verified>>,
    jwt_route: bool,
    key_checked: bool,
    original_path: Option<&str>,
    (trace_id, span_id, sampled): (&str, &str, bool),
) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut out = HeaderMap::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        // A client's copy of the userinfo header is removed only on routes with JWT
        // requirements (envoy `extractor.cc sanitizeHeaders`).
        if jwt_route && n == USERINFO {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    let set = |out: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    if let Some(v) = verified {
        set(&mut out, USERINFO, &v.payload_segment);
    }
    if key_checked {
        set(&mut out, "x-apigateway-api-consumer-type", "PROJECT");
        set(
            &mut out,
            "x-apigateway-api-consumer-number",
            &state.consumer_number,
        );
    }
    // backend_auth (esp-v2 `http/backend_auth/filter.cc`): the client's Authorization moves to
    // X-Forwarded-Authorization (a client-sent one is removed first); disable_auth leaves
    // Authorization alone. Without jwt_audience the audience is the address's scheme and host.
    if !backend.disable_auth {
        out.remove("x-forwarded-authorization");
        if let Some(auth) = out.remove("authorization") {
            out.insert(HeaderName::from_static("x-forwarded-authorization"), auth);
        }
        let audience = backend
            .jwt_audience
            .clone()
            .unwrap_or_else(|| backend.address_origin().to_owned());
        let token = state
            .id_token(&audience)
            .map_err(|_| format!("Token not found for audience: {audience}"))?;
        set(&mut out, "authorization", &format!("Bearer {token}"));
    }
    if let Some(path) = original_path {
        set(&mut out, "x-envoy-original-path", path);
    }
    // Set by Google's front end on API Gateway: the client's address and the scheme it used.
    let client_ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let xff = match req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip.clone(),
    };
    set(&mut out, "x-forwarded-for", &xff);
    let scheme = req.connection_info().scheme().to_owned();
    set(&mut out, "x-forwarded-proto", &scheme);
    set(
        &mut out,
        "forwarded",
        &format!("for=\"{client_ip}\";proto={scheme}"),
    );
    // Trace context out in both formats, with the gateway's span as parent.
    set(
        &mut out,
        "traceparent",
        &format!(
            "00-{trace_id}-{span_id}-{}",
            if sampled { "01" } else { "00" }
        ),
    );
    let span_decimal = u64::from_str_radix(span_id, 16).unwrap_or_default();
    set(
        &mut out,
        "x-cloud-trace-context",
        &format!("{trace_id}/{span_decimal};o={}", u8::from(sampled)),
    );
    if !out.contains_key("x-request-id") {
        set(&mut out, "x-request-id", &uuid_v4());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
