//! backend_auth and the router: the headers the backend gets (esp-v2 `http/backend_auth/filter.cc`),
//! then the call to
//! the backend with the route's deadline and one retry when the connection fails or is reset
//! before the response (ESPv2 defaults), and the backend's answer relayed.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, timeout_at};

use super::path_rewrite::Paths;
use super::reply::Refusal;
use super::state::State;
use crate::jwt::Verified;
use crate::log::Entry;
use crate::spec::Backend;

const USERINFO: &str = "x-apigateway-api-userinfo";

// The names the gateway sets, made at compile time (`from_static` at run time checked each name
// on every request).
const USERINFO_NAME: HeaderName = HeaderName::from_static(USERINFO);
const CONSUMER_TYPE: HeaderName = HeaderName::from_static("x-apigateway-api-consumer-type");
const CONSUMER_NUMBER: HeaderName = HeaderName::from_static("x-apigateway-api-consumer-number");
const FORWARDED_AUTHORIZATION: HeaderName = HeaderName::from_static("x-forwarded-authorization");
const ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const CLOUD_TRACE: HeaderName = HeaderName::from_static("x-cloud-trace-context");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Envoy's local reply when the upstream fails before the response headers, after ESPv2's
/// retry (`retried and the latest `): esp-v2 `tests/integration_test/non_gcp_test.go`,
/// `backend_retry_test.go`.
const CONNECT_FAILURE: &str = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111";
const RESET: &str = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination";

/// Hop-by-hop headers and those the HTTP client sets itself: never copied across.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "host"
            | "expect"
    )
}

/// What the earlier filters learnt about the caller.
pub(super) struct Caller<'a> {
    /// The verified JWT (jwt_authn).
    pub(super) verified: Option<&'a Arc<Verified>>,
    /// Whether the operation has JWT requirements (and this is no CORS preflight).
    pub(super) jwt_route: bool,
    /// The consumer project of the checked API key (service_control).
    pub(super) key_project: Option<&'a str>,
}

/// The headers the backend gets (esp-v2 `http/backend_auth/filter.cc`); `Err` names the audience whose ID token is
/// missing. The trace ids are the log entry's.
pub(super) fn upstream_headers(
    req: &HttpRequest,
    state: &State,
    backend: &Backend,
    caller: &Caller<'_>,
    paths: &Paths,
    entry: &Entry,
    request_id: &std::cell::OnceCell<String>,
) -> Result<HeaderMap, String> {
    let mut out = client_headers(req, caller.jwt_route);
    if let Some(v) = caller.verified {
        set(&mut out, USERINFO_NAME, &v.payload_segment);
    }
    if let Some(project) = caller.key_project {
        out.insert(CONSUMER_TYPE, HeaderValue::from_static("PROJECT"));
        set(&mut out, CONSUMER_NUMBER, state.project_number(project));
    }
    if !backend.disable_auth {
        backend_auth(&mut out, state, backend)?;
    }
    if let Some(path) = &paths.original {
        set(&mut out, ORIGINAL_PATH, path);
    }
    forwarding(&mut out, req, &entry.remote_ip);
    trace_headers(&mut out, entry);
    if !out.contains_key(&REQUEST_ID) {
        set(
            &mut out,
            REQUEST_ID,
            request_id.get_or_init(super::trace::uuid_v4),
        );
    }
    Ok(out)
}

fn set(out: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.insert(name, v);
    }
}

/// The client's headers but the hop-by-hop ones.
fn client_headers(req: &HttpRequest, jwt_route: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        // The method override was applied and the header removed (header_sanitizer).
        if hop_by_hop(n) || n == "x-http-method-override" {
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
    out
}

/// backend_auth (esp-v2 `http/backend_auth/filter.cc`): the client's Authorization moves to
/// X-Forwarded-Authorization (a client-sent one is removed first); disable_auth leaves
/// Authorization alone. Without jwt_audience the audience is the address's scheme and host.
fn backend_auth(out: &mut HeaderMap, state: &State, backend: &Backend) -> Result<(), String> {
    out.remove(&FORWARDED_AUTHORIZATION);
    if let Some(auth) = out.remove(http::header::AUTHORIZATION) {
        out.insert(FORWARDED_AUTHORIZATION, auth);
    }
    let audience = backend
        .jwt_audience
        .as_deref()
        .unwrap_or_else(|| backend.address_origin());
    let bearer = state
        .id_token_bearer(audience)
        .map_err(|_| format!("Token not found for audience: {audience}"))?;
    out.insert(http::header::AUTHORIZATION, bearer);
    Ok(())
}

/// Set by Google's front end on API Gateway: the client's address and the scheme it used.
fn forwarding(out: &mut HeaderMap, req: &HttpRequest, client_ip: &str) {
    let xff = match req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip.to_owned(),
    };
    set(out, FORWARDED_FOR, &xff);
    let info = req.connection_info();
    let scheme = info.scheme();
    set(out, FORWARDED_PROTO, scheme);
    set(
        out,
        http::header::FORWARDED,
        &format!("for=\"{client_ip}\";proto={scheme}"),
    );
}

/// Trace context out in both formats, with the gateway's span as parent.
fn trace_headers(out: &mut HeaderMap, entry: &Entry) {
    let (trace_id, span_id, sampled) = (&entry.trace_id, &entry.span_id, entry.sampled);
    set(
        out,
        TRACEPARENT,
        &format!(
            "00-{trace_id}-{span_id}-{}",
            if sampled { "01" } else { "00" }
        ),
    );
    let span_decimal = u64::from_str_radix(span_id, 16).unwrap_or_default();
    set(
        out,
        CLOUD_TRACE,
        &format!("{trace_id}/{span_decimal};o={}", u8::from(sampled)),
    );
}

/// The backend client of one worker: hyper's pooled HTTP/1 client. The upstream `Host` is the
/// URI's (hyper sets it); no header is added that the client did not send or the filters set.
pub(super) type BackendClient = Client<HttpConnector, Full<web::Bytes>>;

pub(super) fn backend_client() -> BackendClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// The router: sends the request to `uri` within the route's deadline and relays the answer, or
/// refuses as Envoy does on a timeout, a failed connection or a reset.
///
/// ESPv2 sets one retry (`--backend_retry_num=1`) on `reset,connect-failure,refused-stream`
/// (`--backend_retry_ons`; esp-v2 `options/configgenerator.go`, `routegen/helpers/retry.go`),
/// whatever the method: a request that got no response headers is sent once more, within the
/// same deadline (no per-try timeout by default).
pub(super) async fn forward(
    client: &BackendClient,
    method: http::Method,
    backend: &Backend,
    uri: http::Uri,
    headers: HeaderMap,
    again: impl Fn() -> Option<HeaderMap>,
    body: web::Bytes,
) -> Result<HttpResponse, Refusal> {
    let deadline = Instant::now() + backend.deadline;
    // Envoy's response code detail for the route timeout (`ResponseCodeDetails::ResponseTimeout`,
    // seen in API Gateway's request log).
    let timeout = || Refusal::new("response_timeout", 504, "upstream request timeout");
    let request = |headers: HeaderMap| {
        let mut request = http::Request::new(Full::new(body.clone()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        request
    };
    let upstream = match timeout_at(deadline, client.request(request(headers))).await {
        Err(_) => return Err(timeout()),
        Ok(Ok(response)) => response,
        Ok(Err(first)) => {
            let Some(headers) = again() else {
                return Err(send_failure(&first));
            };
            match timeout_at(deadline, client.request(request(headers))).await {
                Err(_) => return Err(timeout()),
                Ok(Err(e)) => return Err(send_failure(&e)),
                Ok(Ok(response)) => response,
            }
        }
    };
    let (parts, body) = upstream.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        if hop_by_hop(name.as_str()) {
            continue;
        }
        response.append_header((name.as_str(), value.as_bytes()));
    }
    match timeout_at(deadline, body.collect()).await {
        Ok(Ok(collected)) => Ok(response.body(collected.to_bytes())),
        Ok(Err(_)) => Err(Refusal::new(
            "upstream_reset_after_response_started",
            502,
            "upstream reset after response started",
        )),
        Err(_) => Err(timeout()),
    }
}

/// Envoy's refusal when no response headers came back, after the retry. The detail is
/// `upstream_reset_before_response_started{<reason>[,<transport failure reason>]}` with spaces as
/// `_` (esp-v2 `dynamic_routing_integration_test.go`'s TLS case).
fn send_failure(e: &hyper_util::client::legacy::Error) -> Refusal {
    if e.is_connect() {
        return Refusal::new(
            "upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_111}",
            503,
            CONNECT_FAILURE,
        );
    }
    Refusal::new(
        "upstream_reset_before_response_started{connection_termination}",
        503,
        RESET,
    )
}
