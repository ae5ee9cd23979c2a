//! A service's front end: one listener for the service URL and one per tag URL. Each request is
//! checked as Cloud Run's IAM does ([`crate::iam`]), given to a revision by the traffic split
//! (a weighted random pick per request) or by its tag, delayed or failed by that revision's
//! faults, and forwarded to a ready instance.
//!
//! Headers the container gets, as Cloud Run passes them: the request's own (`Authorization`
//! included: Cloud Run does not strip it; an `X-Serverless-Authorization` loses its signature,
//! <https://cloud.google.com/run/docs/authenticating/service-to-service>), the original `Host`,
//! `X-Forwarded-For` (the client's address appended), `X-Forwarded-Proto`, and a trace context:
//! when the request carries neither `traceparent` nor `X-Cloud-Trace-Context`, both are added for a
//! new trace, and when it carries one, the other is derived from it (Cloud Run "Tracing":
//! requests get `X-Cloud-Trace-Context` and `traceparent`,
//! <https://cloud.google.com/run/docs/trace>). Hop-by-hop headers are not forwarded.
//!
//! Requests up to 32 MiB (Cloud Run's HTTP/1 request limit,
//! <https://cloud.google.com/run/quotas>); Cloud Run's default request timeout of 300 s.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::{Context as _, bail};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::iam;
use crate::{Iam, Inner, ServiceId, TrafficTarget, lock};

/// Cloud Run's HTTP/1 request size limit.
const MAX_REQUEST: usize = 32 << 20;
/// Cloud Run's default request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a request waits for an instance of its revision to be ready (one being replaced).
const INSTANCE_WAIT: Duration = Duration::from_secs(30);
/// How long one attempt waits for a ready instance before the split is drawn again.
const RETRY_SLICE: Duration = Duration::from_secs(1);

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

/// The HTTP/1 client requests go to instances with, one per listener worker. It keeps no idle
/// connection: each request opens its own (cheap on loopback), so no request is ever written to
/// a kept connection that a stopping instance has just closed, and a connection never outlives
/// the listener worker whose runtime drives it.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<web::Bytes>>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// Where a service's requests go.
#[derive(Debug, Default)]
struct Routes {
    /// (revision, percent), percentages summing to 100; empty until traffic is set.
    split: Vec<(String, u32)>,
    /// tag → revision.
    tags: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Listener {
    url: String,
    handle: ServerHandle,
}

/// One service's front end.
#[derive(Debug)]
pub struct Service {
    pub id: ServiceId,
    pub url: String,
    pub(crate) iam: Mutex<Iam>,
    routes: Mutex<Routes>,
    main: Mutex<Option<Listener>>,
    tag_listeners: Mutex<BTreeMap<String, Listener>>,
    ip: std::net::IpAddr,
}

/// What a listener's handler knows.
struct Ctx {
    inner: Weak<Inner>,
    service: Weak<Service>,
    /// `None`: the service URL; `Some(tag)`: that tag's URL.
    tag: Option<String>,
    /// This listener's URL.
    url: String,
}

impl Service {
    pub(crate) fn start(
        inner: &Arc<Inner>,
        id: ServiceId,
        listen: SocketAddr,
        iam: Iam,
    ) -> anyhow::Result<Arc<Service>> {
        let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let service = Arc::new(Service {
            id,
            url: url.clone(),
            iam: Mutex::new(iam),
            routes: Mutex::new(Routes::default()),
            main: Mutex::new(None),
            tag_listeners: Mutex::new(BTreeMap::new()),
            ip: addr.ip(),
        });
        let handle = serve(inner, &service, None, listener, url.clone())?;
        *lock(&service.main) = Some(Listener { url, handle });
        Ok(service)
    }

    /// Applies a traffic split and its tags; opens a listener for each new tag and closes those
    /// of tags gone. Returns (tag, URL) for every tag.
    pub(crate) async fn route(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        traffic: &[TrafficTarget],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut tags = BTreeMap::new();
        for target in traffic {
            if let Some(tag) = &target.tag
                && tags.insert(tag.clone(), target.revision.clone()).is_some()
            {
                bail!("tag {tag:?} is given twice");
            }
        }
        let mut opened = Vec::new();
        for tag in tags.keys() {
            if lock(&self.tag_listeners).contains_key(tag) {
                continue;
            }
            let listener = TcpListener::bind(SocketAddr::new(self.ip, 0))
                .with_context(|| format!("binding a listener for tag {tag}"))?;
            let url = format!("http://{}", listener.local_addr()?);
            let handle = serve(inner, self, Some(tag.clone()), listener, url.clone())?;
            opened.push((tag.clone(), Listener { url, handle }));
        }
        let gone: Vec<Listener> = {
            let mut listeners = lock(&self.tag_listeners);
            listeners.extend(opened);
            let stale: Vec<String> = listeners
                .keys()
                .filter(|t| !tags.contains_key(*t))
                .cloned()
                .collect();
            stale.iter().filter_map(|t| listeners.remove(t)).collect()
        };
        {
            let mut routes = lock(&self.routes);
            routes.split = traffic
                .iter()
                .filter(|t| t.percent > 0)
                .map(|t| (t.revision.clone(), t.percent))
                .collect();
            routes.tags = tags;
        }
        for listener in gone {
            listener.handle.stop(true).await;
        }
        let listeners = lock(&self.tag_listeners);
        Ok(listeners
            .iter()
            .map(|(tag, l)| (tag.clone(), l.url.clone()))
            .collect())
    }

    /// Closes every listener of the service.
    pub(crate) async fn stop(&self) {
        let mut handles: Vec<ServerHandle> = std::mem::take(&mut *lock(&self.tag_listeners))
            .into_values()
            .map(|l| l.handle)
            .collect();
        handles.extend(lock(&self.main).take().map(|l| l.handle));
        for handle in handles {
            handle.stop(true).await;
        }
    }

    /// The revision a request goes to: its tag's, or one drawn by the split.
    fn pick(&self, tag: Option<&str>) -> Option<String> {
        let routes = lock(&self.routes);
        if let Some(tag) = tag {
            return routes.tags.get(tag).cloned();
        }
        let total: u32 = routes.split.iter().map(|(_, p)| p).sum();
        if total == 0 {
            return None;
        }
        let mut draw = fastrand::u32(0..total);
        for (revision, percent) in &routes.split {
            if draw < *percent {
                return Some(revision.clone());
            }
            draw -= percent;
        }
        None
    }
}

fn serve(
    inner: &Arc<Inner>,
    service: &Arc<Service>,
    tag: Option<String>,
    listener: TcpListener,
    url: String,
) -> anyhow::Result<ServerHandle> {
    let ctx = web::Data::new(Ctx {
        inner: Arc::downgrade(inner),
        service: Arc::downgrade(service),
        tag,
        url,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ctx.clone())
            .app_data(web::Data::new(client()))
            .app_data(web::PayloadConfig::new(MAX_REQUEST))
            .default_service(web::to(handle))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

fn text(status: u16, body: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("text/plain; charset=utf-8")
        .body(body.to_owned())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    ctx: web::Data<Ctx>,
    client: web::Data<Client>,
) -> HttpResponse {
    let (Some(inner), Some(service)) = (ctx.inner.upgrade(), ctx.service.upgrade()) else {
        return text(503, "Service Unavailable");
    };
    // The IAM check, before anything else sees the request.
    let iam = lock(&service.iam).clone();
    let mut audiences: Vec<&str> = vec![ctx.url.as_str(), service.url.as_str()];
    audiences.extend(iam.custom_audiences.iter().map(String::as_str));
    let token = iam::presented_token(
        header(&req, "x-serverless-authorization"),
        header(&req, "authorization"),
    );
    if let Err(refusal) = iam::check(&iam, &inner.opts.google_jwks, &audiences, token) {
        tracing::info!(
            service = %service.id.name,
            status = refusal.status(),
            path = req.path(),
            "{}",
            refusal.log_message()
        );
        return HttpResponse::build(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN),
        )
        .content_type("text/html; charset=UTF-8")
        .body(refusal.page(req.path()));
    }
    let Some(revision_name) = service.pick(ctx.tag.as_deref()) else {
        return text(503, "Service Unavailable: the service routes no traffic");
    };
    if let Some(fault) = inner.fault(&revision_name) {
        if !fault.added_latency.is_zero() {
            tokio::time::sleep(fault.added_latency).await;
        }
        if fault.error_ratio > 0.0 && fastrand::f64() < fault.error_ratio {
            let mut response = text(fault.error_status, "fault injected by the local Cloud Run");
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-local-run-fault"),
                actix_web::http::header::HeaderValue::from_static("error"),
            );
            return response;
        }
    }
    // Until the request reaches an instance: a revision retired after it was picked (the split
    // changed meanwhile) gives way to a new pick, and a connection the instance refused (it never
    // reached it) is tried again once an instance is ready (the supervisor replaces one that
    // exited), all within one bound.
    let deadline = tokio::time::Instant::now() + INSTANCE_WAIT;
    let mut revision_name = revision_name;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            // Cloud Run: "The request was aborted because there was no available instance."
            return text(
                503,
                "Service Unavailable: the request was aborted because there was no available instance",
            );
        }
        let revision = inner
            .revision(&service.id, &revision_name)
            .filter(|r| r.is_active());
        let lease = match revision {
            Some(revision) => revision.wait_ready(RETRY_SLICE.min(deadline - now)).await,
            None => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                None
            }
        };
        if let Some(lease) = lease {
            match forward(&client, &req, body.clone(), lease.port).await {
                Forwarded::Answer(response) => return response,
                Forwarded::Refused => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        match service.pick(ctx.tag.as_deref()) {
            Some(name) => revision_name = name,
            None => return text(503, "Service Unavailable: the service routes no traffic"),
        }
    }
}

enum Forwarded {
    /// The instance's answer, or the front end's when the exchange failed after connecting.
    Answer(HttpResponse),
    /// The connection was refused: the request did not reach the instance.
    Refused,
}

/// The request as the instance gets it.
fn upstream_headers(req: &HttpRequest) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        let value = if n == "x-serverless-authorization" {
            strip_signature(value.as_bytes())
        } else {
            value.as_bytes().to_vec()
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            out.append(n, v);
        }
    }
    let client_ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let xff = match header(req, "x-forwarded-for") {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip,
    };
    set(&mut out, "x-forwarded-for", &xff);
    set(
        &mut out,
        "x-forwarded-proto",
        req.connection_info().scheme(),
    );
    trace_context(&mut out);
    out
}

/// `Bearer header.payload.signature` → `Bearer header.payload.` (Cloud Run removes the signature
/// of an `X-Serverless-Authorization` token before the container sees it).
fn strip_signature(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    match text.rsplit_once('.') {
        Some((signed, _)) if text.matches('.').count() == 2 => format!("{signed}.").into_bytes(),
        _ => value.to_vec(),
    }
}

fn set(out: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        out.insert(HeaderName::from_static(name), v);
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// Adds the trace context Cloud Run adds: `traceparent` (W3C) and
/// `X-Cloud-Trace-Context: TRACE/SPAN;o=FLAG` (span id in decimal), each derived from the other
/// when one is present, both new when neither is.
fn trace_context(out: &mut HeaderMap) {
    let traceparent = out
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cloud = out
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (traceparent, cloud) {
        (Some(_), Some(_)) => {}
        (Some(tp), None) => {
            let parts: Vec<&str> = tp.split('-').collect();
            if let [_, trace, span, flags] = parts.as_slice()
                && let Ok(span) = u64::from_str_radix(span, 16)
            {
                let sampled = u8::from_str_radix(flags, 16).unwrap_or(0) & 1;
                set(
                    out,
                    "x-cloud-trace-context",
                    &format!("{trace}/{span};o={sampled}"),
                );
            }
        }
        (None, Some(cloud)) => {
            let (trace, rest) = cloud.split_once('/').unwrap_or((cloud.as_str(), "0"));
            let (span, options) = rest.split_once(';').unwrap_or((rest, "o=0"));
            let span: u64 = span.parse().unwrap_or_else(|_| fastrand::u64(1..));
            let sampled = u8::from(options.trim() == "o=1");
            if trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) {
                set(
                    out,
                    "traceparent",
                    &format!(
                        "00-{}-{span:016x}-{sampled:02x}",
                        trace.to_ascii_lowercase()
                    ),
                );
            }
        }
        (None, None) => {
            let trace = random_hex(16);
            let span = fastrand::u64(1..);
            set(out, "traceparent", &format!("00-{trace}-{span:016x}-00"));
            set(out, "x-cloud-trace-context", &format!("{trace}/{span};o=0"));
        }
    }
}

async fn forward(client: &Client, req: &HttpRequest, body: web::Bytes, port: u16) -> Forwarded {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let Ok(uri) = http::Uri::try_from(format!("http://127.0.0.1:{port}{path}")) else {
        return Forwarded::Answer(text(400, "Bad Request"));
    };
    let Ok(method) = http::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return Forwarded::Answer(text(400, "Bad Request"));
    };
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = upstream_headers(req);
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, client.request(request)).await {
        Err(_) => return Forwarded::Answer(text(504, "upstream request timeout")),
        Ok(Err(e)) if e.is_connect() => return Forwarded::Refused,
        Ok(Err(e)) => {
            tracing::warn!("forwarding to 127.0.0.1:{port}: {e}");
            // Cloud Run: "The request failed because either the HTTP response was malformed or
            // connection to the instance had an error."
            return Forwarded::Answer(text(
                503,
                "Service Unavailable: the request failed because either the HTTP response was malformed or connection to the instance had an error",
            ));
        }
        Ok(Ok(response)) => response,
    };
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!("reading the answer of 127.0.0.1:{port}: {e}");
            return Forwarded::Answer(text(503, "Service Unavailable"));
        }
    };
    let mut out = HttpResponse::build(
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    for (name, value) in &parts.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.append_header((name.as_str(), value.as_bytes()));
    }
    // "If your Cloud Run service response includes a Set-Cookie header, Cloud Run sets the
    // Cache-Control header to private" (container contract, "Response caching and cookies").
    if parts.headers.contains_key(http::header::SET_COOKIE) {
        out.insert_header(("cache-control", "private"));
    }
    Forwarded::Answer(out.body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serverless_authorization_token_loses_its_signature() {
        assert_eq!(strip_signature(b"Bearer aaa.bbb.ccc"), b"Bearer aaa.bbb.");
        assert_eq!(strip_signature(b"Bearer opaque"), b"Bearer opaque");
    }

    #[test]
    fn trace_context_is_derived_both_ways() {
        let mut headers = HeaderMap::new();
        set(
            &mut headers,
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-00000000000000ff-01",
        );
        trace_context(&mut headers);
        assert_eq!(
            headers["x-cloud-trace-context"],
            "0af7651916cd43dd8448eb211c80319c/255;o=1"
        );
        let mut headers = HeaderMap::new();
        set(
            &mut headers,
            "x-cloud-trace-context",
            "0af7651916cd43dd8448eb211c80319c/255;o=1",
        );
        trace_context(&mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-00000000000000ff-01"
        );
        let mut headers = HeaderMap::new();
        trace_context(&mut headers);
        let tp = headers["traceparent"].to_str().expect("ascii").to_owned();
        let trace = tp.split('-').nth(1).expect("trace id");
        assert!(
            headers["x-cloud-trace-context"]
                .to_str()
                .expect("ascii")
                .starts_with(&format!("{trace}/"))
        );
    }
}
