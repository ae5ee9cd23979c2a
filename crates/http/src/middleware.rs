//! Per-request telemetry, as one actix middleware wrapped around the whole `App`:
//!
//! - trace context: `traceparent`, else `X-Cloud-Trace-Context`, else a fresh trace (malformed
//!   headers are ignored); the request's future runs inside the OpenTelemetry context, so every
//!   log line of the request carries its trace and span ids;
//! - an OpenTelemetry server span following the HTTP semantic conventions, named after the route
//!   template (`GET /items/{id}`), and the `http.server.request.duration` histogram;
//! - one access-log entry (`httpRequest`) per request, health probes sampled by setting; the
//!   values of credential query parameters (`key`, `api_key`, `access_token`) are written as
//!   `REDACTED` there and in Error Reporting events, and no request header is ever logged;
//! - an Error Reporting event for every 5xx, with the cause chain, except a 503: an unreachable
//!   database or an exhausted pool is an expected operating state, logged at WARNING with its cause
//!   and no Error Reporting type (alerting watches the 5xx ratio instead);
//! - panics in handlers: caught, reported (with where they happened) and answered with a generic
//!   500 problem+json; the worker keeps serving.

use std::future::{Ready, ready};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::HeaderValue;
use actix_web::http::{Method, Uri, Version, header};
use actix_web::{Error, HttpRequest};
use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;
use items_telemetry::HttpInstruments;
use items_telemetry::panic::PanicReport;
use items_telemetry::propagation::remote_parent;
use opentelemetry::trace::{FutureExt as _, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

/// Paths whose access-log entries follow `log.health_probe_sample_ratio`.
const HEALTH_PROBES: [&str; 2] = [crate::HEALTH_LIVE, crate::HEALTH_READY];

/// The telemetry middleware: `App::new().wrap(RequestTelemetry::new(instruments))`.
#[derive(Debug, Clone)]
pub struct RequestTelemetry {
    instruments: Rc<HttpInstruments>,
}

impl RequestTelemetry {
    pub fn new(instruments: HttpInstruments) -> Self {
        Self {
            instruments: Rc::new(instruments),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTelemetryService {
            service: Rc::new(service),
            instruments: Rc::clone(&self.instruments),
        }))
    }
}

#[derive(Debug)]
pub struct RequestTelemetryService<S> {
    service: Rc<S>,
    instruments: Rc<HttpInstruments>,
}

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = method_name(req.method());
        let headers = req.headers();
        let parent = remote_parent(
            headers.get("traceparent").map(|v| v.as_bytes()),
            headers.get("x-cloud-trace-context").map(|v| v.as_bytes()),
        );
        // Not the `HttpRequest` itself: routing needs it unshared, and a panic drops it.
        let facts = RequestFacts::of(&req);
        let cx = self.instruments.start_server_span(method, parent);
        let service = Rc::clone(&self.service);
        let instruments = Rc::clone(&self.instruments);
        let handled = async move {
            // Both `call` and the future it returns may panic.
            let outcome = AssertUnwindSafe(async move { service.call(req).await })
                .catch_unwind()
                .await;
            let (response, panic) = match outcome {
                Ok(Ok(response)) => (response.map_into_left_body(), None),
                Ok(Err(e)) => {
                    let request = stand_in_request(&facts);
                    (
                        ServiceResponse::from_err(e, request).map_into_right_body(),
                        None,
                    )
                }
                Err(payload) => {
                    let report =
                        items_telemetry::panic::take_panic().unwrap_or_else(|| PanicReport {
                            message: panic_message(payload.as_ref()),
                            file: "<unknown>".to_owned(),
                            line: 0,
                            function: None,
                        });
                    let response = crate::error::panic_response();
                    (
                        ServiceResponse::new(stand_in_request(&facts), response)
                            .map_into_right_body(),
                        Some(report),
                    )
                }
            };
            finish(&instruments, method, &facts, started, &response, panic);
            Ok(response)
        };
        Box::pin(handled.with_context(cx))
    }
}

/// Span attributes, metrics and log entries once the response is known. Runs inside the
/// request's context.
fn finish<B: MessageBody>(
    instruments: &HttpInstruments,
    method: &'static str,
    facts: &RequestFacts,
    started: Instant,
    response: &ServiceResponse<B>,
    panic: Option<PanicReport>,
) {
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response.request().match_pattern();
    let cx = Context::current();
    let span = cx.span();
    // Only a recording (sampled) span gets attributes: unsampled requests build none. All of
    // them in one call (each call locks the span).
    if span.is_recording() {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("url.path", facts.uri.path().to_owned()),
            KeyValue::new("url.scheme", facts.scheme()),
            KeyValue::new("network.protocol.version", protocol_version(facts.version)),
        ];
        if let Some(route) = &route {
            span.update_name(format!("{method} {route}"));
            attributes.push(KeyValue::new("http.route", route.clone()));
        }
        if let Some(agent) = facts.user_agent() {
            attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
        }
        if status >= 500 {
            attributes.push(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(
                response
                    .response()
                    .status()
                    .canonical_reason()
                    .unwrap_or("server error"),
            ));
        }
        span.set_attributes(attributes);
    }
    instruments.record_duration(elapsed.as_secs_f64(), method, route.as_deref(), status);

    if status == 503 && panic.is_none() {
        warn_unavailable(method, route.as_deref(), response);
    } else if status >= 500 {
        report_error(method, facts, route.as_deref(), response, panic.as_ref());
    }
    let probe = route.as_deref().is_some_and(|r| HEALTH_PROBES.contains(&r));
    if instruments.log_access(probe, span.span_context()) {
        access_log(
            method,
            facts,
            status,
            response.response().body().size(),
            elapsed,
        );
    }
    span.end();
}

/// A 503 (database unreachable, pool exhausted): one WARNING line with the cause, not an Error
/// Reporting event, so that a database restart does not flood Error Reporting.
fn warn_unavailable<B>(method: &'static str, route: Option<&str>, response: &ServiceResponse<B>) {
    let cause = response
        .response()
        .error()
        .map(crate::error::log_detail)
        .unwrap_or_else(|| "no error detail".to_owned());
    tracing::warn!(
        "{method} {}: {}: {cause}",
        route.unwrap_or("<no route>"),
        response.status()
    );
}

/// The Error Reporting event of a 5xx (a 503 only when a panic produced it): the cause chain (or the panic) and the request.
fn report_error<B>(
    method: &'static str,
    facts: &RequestFacts,
    route: Option<&str>,
    response: &ServiceResponse<B>,
    panic: Option<&PanicReport>,
) {
    let operation = format!("{method} {}", route.unwrap_or("<no route>"));
    let (message, file, line, function) = match panic {
        Some(p) => (
            format!(
                "{operation}: panicked at {}:{}: {}",
                p.file, p.line, p.message
            ),
            p.file.clone(),
            p.line,
            p.function.clone().unwrap_or_else(|| operation.clone()),
        ),
        None => {
            let cause = response
                .response()
                .error()
                .map(crate::error::log_detail)
                .unwrap_or_else(|| "no error detail".to_owned());
            (
                format!("{operation}: {}: {cause}", response.status()),
                file!().to_owned(),
                line!(),
                operation.clone(),
            )
        }
    };
    tracing::error!(
        context.httpRequest.method = method,
        context.httpRequest.url = %facts.url(),
        context.httpRequest.userAgent = facts.user_agent().unwrap_or_default(),
        context.httpRequest.remoteIp = %facts.remote_ip(),
        context.httpRequest.responseStatusCode = response.status().as_u16(),
        context.reportLocation.filePath = %file,
        context.reportLocation.lineNumber = line,
        context.reportLocation.functionName = %function,
        "{message}"
    );
}

/// One access-log entry in Cloud Logging's `httpRequest` shape.
fn access_log(
    method: &'static str,
    facts: &RequestFacts,
    status: u16,
    size: BodySize,
    latency: std::time::Duration,
) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let size = match size {
        BodySize::None => 0,
        BodySize::Sized(n) => n,
        BodySize::Stream => 0,
    };
    tracing::info!(
        httpRequest.requestMethod = method,
        httpRequest.requestUrl = %facts.url(),
        httpRequest.status = status,
        httpRequest.responseSize = %size,
        httpRequest.userAgent = facts.user_agent().unwrap_or_default(),
        httpRequest.remoteIp = %facts.remote_ip(),
        httpRequest.latency = %items_telemetry::Latency(latency),
        httpRequest.protocol = protocol(facts.version),
        "{method} {} {status}",
        RedactedTarget(&facts.uri),
    );
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// What the logs need to know about a request, taken before the request goes down the chain
/// (cheap: header values and the URI are reference-counted bytes).
#[derive(Debug)]
struct RequestFacts {
    method: Method,
    uri: Uri,
    version: Version,
    peer: Option<std::net::SocketAddr>,
    host: Option<HeaderValue>,
    forwarded_proto: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl RequestFacts {
    fn of(req: &ServiceRequest) -> Self {
        let headers = req.headers();
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            peer: req.peer_addr(),
            host: headers.get(header::HOST).cloned(),
            forwarded_proto: headers.get("x-forwarded-proto").cloned(),
            forwarded_for: headers.get("x-forwarded-for").cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
        }
    }

    fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_ref().and_then(|v| v.to_str().ok())
    }

    /// `https` behind Cloud Run's front end (`X-Forwarded-Proto`), else `http`.
    fn scheme(&self) -> &'static str {
        match self.forwarded_proto.as_ref().map(HeaderValue::as_bytes) {
            Some(b"https") => "https",
            _ => "http",
        }
    }

    /// `scheme://host/path?query` as the client addressed it (displayed, not allocated).
    fn url(&self) -> impl std::fmt::Display + '_ {
        struct Url<'a>(&'a RequestFacts);
        impl std::fmt::Display for Url<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let facts = self.0;
                let host = facts
                    .host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| facts.uri.authority().map(|a| a.as_str()))
                    .unwrap_or("localhost");
                f.write_str(facts.scheme())?;
                f.write_str("://")?;
                f.write_str(host)?;
                write!(f, "{}", RedactedTarget(&facts.uri))
            }
        }
        Url(self)
    }

    /// The client: the first `X-Forwarded-For` entry (Cloud Run, API Gateway), else the peer
    /// (displayed, not allocated).
    fn remote_ip(&self) -> impl std::fmt::Display + '_ {
        struct RemoteIp<'a>(&'a RequestFacts);
        impl std::fmt::Display for RemoteIp<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let forwarded = self
                    .0
                    .forwarded_for
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .map(str::trim)
                    .filter(|ip| !ip.is_empty());
                match (forwarded, self.0.peer) {
                    (Some(ip), _) => f.write_str(ip),
                    (None, Some(peer)) => write!(f, "{}", peer.ip()),
                    (None, None) => Ok(()),
                }
            }
        }
        RemoteIp(self)
    }
}

/// Query parameters whose values are credentials: API Gateway (ESPv2) takes an API key from
/// `key` or `api_key` and a JWT from `access_token` (esp-v2 `service_control/config_parser.cc`,
/// `filtergen/jwt_authn.go`). Their values never reach a log line.
pub(crate) const SECRET_QUERY_PARAMETERS: [&str; 3] = ["key", "api_key", "access_token"];

/// What replaces a secret parameter's value in logs.
pub(crate) const REDACTED: &str = "REDACTED";

/// The path and query of `uri` as logs show them: the values of [`SECRET_QUERY_PARAMETERS`]
/// replaced by [`REDACTED`] (names compared after percent-decoding, ASCII case-insensitively),
/// everything else as received. Headers are never logged, so `Authorization` and `x-api-key`
/// need no such treatment.
struct RedactedTarget<'a>(&'a Uri);

impl std::fmt::Display for RedactedTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.0.path();
        f.write_str(if path.is_empty() { "/" } else { path })?;
        let Some(query) = self.0.query() else {
            return Ok(());
        };
        f.write_str("?")?;
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret_parameter(name) => {
                    write!(f, "{name}={REDACTED}")?;
                }
                // A bare `?key` carries no value; anything else is written as received.
                _ => f.write_str(pair)?,
            }
        }
        Ok(())
    }
}

/// Whether a raw (still percent-encoded) query parameter name is one of the credentials.
fn is_secret_parameter(raw_name: &str) -> bool {
    form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .is_some_and(|(name, _)| {
            SECRET_QUERY_PARAMETERS
                .iter()
                .any(|secret| name.eq_ignore_ascii_case(secret))
        })
}

/// A stand-in request for a response whose own request is gone (the handler panicked, or the
/// chain failed before answering): only the response part reaches the client.
fn stand_in_request(facts: &RequestFacts) -> HttpRequest {
    actix_web::test::TestRequest::default()
        .method(facts.method.clone())
        .uri(&facts.uri.to_string())
        .to_http_request()
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn protocol_version(version: Version) -> &'static str {
    &protocol(version)["HTTP/".len()..]
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    fn shown(target: &str) -> String {
        RedactedTarget(&target.parse::<Uri>().expect("a request target")).to_string()
    }

    #[test]
    fn credential_parameters_are_redacted_and_the_rest_is_kept() {
        assert_eq!(
            shown("/items?key=AIzaSecret&page_size=5&api_key=k2&access_token=eyJ.a.b"),
            "/items?key=REDACTED&page_size=5&api_key=REDACTED&access_token=REDACTED"
        );
        // Percent-encoded or differently cased names are the same parameter to a decoder.
        assert_eq!(
            shown("/docs?k%65y=AIzaSecret&KEY=x&Access_Token=t"),
            "/docs?k%65y=REDACTED&KEY=REDACTED&Access_Token=REDACTED"
        );
        // Other parameters, fragments of names, and no query at all are untouched.
        assert_eq!(
            shown("/items?monkey=1&keys=2&key"),
            "/items?monkey=1&keys=2&key"
        );
        assert_eq!(shown("/items/7"), "/items/7");
        assert_eq!(shown("/items?"), "/items?");
    }
}
