//! An in-process OTLP/HTTP receiver: decodes the real protobuf requests the exporters send.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// Headers of every request (traces and metrics), in arrival order.
    headers: Vec<Headers>,
    /// Trace requests still to refuse: (status, `Retry-After` seconds).
    refuse: Vec<(u16, Option<u64>)>,
    /// When each trace request arrived, refused or not.
    trace_arrivals: Vec<Instant>,
}

#[derive(Clone)]
pub struct Receiver {
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let state = web::Data::from(received.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/traces", web::post().to(traces))
                .route("/v1/metrics", web::post().to(metrics))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            received,
        }
    }

    /// Refuses the next trace requests with these statuses (and `Retry-After` seconds).
    pub fn refuse_traces(&self, answers: &[(u16, Option<u64>)]) {
        self.received.lock().unwrap().refuse = answers.to_vec();
    }

    /// The headers of every request received.
    pub fn headers(&self) -> Vec<Headers> {
        self.received.lock().unwrap().headers.clone()
    }

    /// When each trace request arrived.
    pub fn trace_arrivals(&self) -> Vec<Instant> {
        self.received.lock().unwrap().trace_arrivals.clone()
    }

    /// Every span received, with its resource.
    pub fn spans(&self) -> Vec<(Resource, Span)> {
        let received = self.received.lock().unwrap();
        let mut out = Vec::new();
        for request in &received.traces {
            for rs in &request.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((rs.resource.clone().unwrap_or_default(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every metric received (latest last), with its resource.
    pub fn metrics(&self) -> Vec<(Resource, Metric)> {
        let received = self.received.lock().unwrap();
        let mut out = Vec::new();
        for request in &received.metrics {
            for rm in &request.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        out.push((rm.resource.clone().unwrap_or_default(), metric.clone()));
                    }
                }
            }
        }
        out
    }

    /// Waits (up to `timeout`) until `done` holds.
    pub async fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done(self)
    }
}

/// The body, inflated when it is gzip-encoded; records the request's headers.
fn body_of(state: &Mutex<Received>, request: &HttpRequest, body: web::Bytes) -> Vec<u8> {
    let headers: Headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzip = header(&headers, "content-encoding") == Some("gzip");
    state.lock().unwrap().headers.push(headers);
    if gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).unwrap();
        out
    } else {
        body.to_vec()
    }
}

async fn traces(
    state: web::Data<Mutex<Received>>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let body = body_of(&state, &request, body);
    {
        let mut state = state.lock().unwrap();
        state.trace_arrivals.push(Instant::now());
        if !state.refuse.is_empty() {
            let (status, retry_after) = state.refuse.remove(0);
            let mut response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
            if let Some(seconds) = retry_after {
                response.insert_header(("retry-after", seconds.to_string()));
            }
            return response.finish();
        }
    }
    match ExportTraceServiceRequest::decode(&body[..]) {
        Ok(request) => {
            state.lock().unwrap().traces.push(request);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .finish()
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

async fn metrics(
    state: web::Data<Mutex<Received>>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let body = body_of(&state, &request, body);
    match ExportMetricsServiceRequest::decode(&body[..]) {
        Ok(request) => {
            state.lock().unwrap().metrics.push(request);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .finish()
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

/// A request's headers: (lower-case name, value).
pub type Headers = Vec<(String, String)>;

/// The first value of a header.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An attribute as a string (strings, ints and bools).
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => format!("{:?}", AnyValue::clone(value)),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
