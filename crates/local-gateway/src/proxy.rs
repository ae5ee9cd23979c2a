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
mod reply;
mod request;
mod router;
mod routing;
mod service_control;
mod state;
mod trace;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody as _;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use crate::log::{self, Entry};
use crate::path;
use reply::Refusal;
use request::{header, query_pairs};
pub use state::State;

pub fn server(
    state: Arc<State>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(router::backend_client()))
            .default_service(web::to(handle))
    })
    .workers(workers)
    .backlog(2048)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?
    .run())
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    client: web::Data<router::BackendClient>,
) -> HttpResponse {
    let start = Instant::now();
    let (trace_id, span_id, sampled) = trace::ids(&req, state.config.trace_sample_rate);
    let method = request_method(&req);
    // Envoy normalises `:path` before any filter sees it, and ESPv2 reports that `:path`
    // (esp-v2 `service_control/handler_impl.cc`, `info.url = path_`).
    let normalized = path::normalize(req.uri().path());
    let mut entry = Entry {
        method: method.to_owned(),
        url: log::request_url(&normalized, req.uri().query(), &state.token_params),
        remote_ip: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        referer: header(&req, "referer"),
        protocol: protocol(req.version()),
        api_method: state.unknown_method.clone(),
        api_key_state: "NOT CHECKED",
        trace_id,
        span_id,
        sampled,
        // Filled in below, as the request goes (no `..Default::default()`: it would build, and
        // drop, a default `api_method` on every request).
        status: 0,
        request_size: 0,
        response_size: 0,
        latency: std::time::Duration::ZERO,
        api_key: None,
        response_code_detail: std::borrow::Cow::Borrowed(""),
        error_cause: None,
        jwt_payloads: None,
    };
    let response = match process(
        &req, method, normalized, payload, &state, &client, &mut entry,
    )
    .await
    {
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

/// The log's `protocol` (`HTTP/1.1`, as `Version`'s `Debug` writes it).
fn protocol(version: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The method the filters see: ESPv2's header_sanitizer filter, first in the chain, replaces
/// `:method` with `X-HTTP-Method-Override` as sent and removes that header before routing
/// (esp-v2 `envoy/utils/http_header_utils.cc` `handleHttpMethodOverride`;
/// `tests/integration_test/http_method_override_test`).
fn request_method(req: &HttpRequest) -> &str {
    req.headers()
        .get(METHOD_OVERRIDE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| req.method().as_str())
}

/// The header ESPv2 takes an overriding method from.
const METHOD_OVERRIDE: &str = "x-http-method-override";

/// The filters in ESPv2's order, then the backend's response.
async fn process(
    req: &HttpRequest,
    method: &str,
    normalized: String,
    payload: web::Payload,
    state: &State,
    client: &router::BackendClient,
    entry: &mut Entry,
) -> Result<HttpResponse, Refusal> {
    limits::check_headers(req)?;
    let query = req.uri().query();
    let query_list = query.map(query_pairs).unwrap_or_default();
    // The Service Control handler extracts the key for every request, refused ones included,
    // and reports it when not empty (esp-v2 `service_control/handler_impl.cc`,
    // `request_builder.cc FillLogEntry`).
    let api_key = service_control::api_key(req, &query_list);
    if !api_key.is_empty() {
        entry.api_key = Some(api_key.to_owned());
    }
    let matched = routing::route(state, method, &normalized)?;
    let operation = &*matched.operation;
    entry.api_method = state.api_method(&operation.operation_id);

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
    let key_project = service_control::check(state, &matched, api_key, entry)?;

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
        key_project,
    };
    // The retry sends the same headers, the request id included; they are built again for it
    // rather than cloned for every request. The id is made only when the client sent none.
    let request_id = std::cell::OnceCell::new();
    let headers =
        || router::upstream_headers(req, state, backend, &caller, &paths, entry, &request_id);
    let first = headers().map_err(|e| Refusal::new("backend_auth_token_missing", 500, e))?;
    let uri = http::Uri::try_from(format!("{}{}", state.backend_base, paths.upstream))
        .map_err(|e| Refusal::new("upstream_uri_invalid", 500, e.to_string()))?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| Refusal::new("invalid_method", 400, e.to_string()))?;
    let response =
        router::forward(client, method, backend, uri, first, || headers().ok(), body).await?;
    entry.response_code_detail = "via_upstream".into();
    Ok(response)
}
