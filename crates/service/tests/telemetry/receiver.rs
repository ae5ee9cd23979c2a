//! An in-process OTLP/HTTP receiver: decodes the real protobuf requests the exporters send.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
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

async fn traces(state: web::Data<Mutex<Received>>, body: web::Bytes) -> HttpResponse {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            state.lock().unwrap().traces.push(request);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .finish()
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

async fn metrics(state: web::Data<Mutex<Received>>, body: web::Bytes) -> HttpResponse {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            state.lock().unwrap().metrics.push(request);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .finish()
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
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
