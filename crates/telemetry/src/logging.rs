//! Logs on stdout: Cloud Logging's structured JSON (one object per line) or a readable format.
//!
//! The JSON layer writes `severity`, `message`, `time`, `logging.googleapis.com/sourceLocation`
//! on every line and, inside a request, `logging.googleapis.com/trace`, `…/spanId` and
//! `…/trace_sampled`, taken from the OpenTelemetry context the HTTP middleware attaches to the
//! request's future. Fields named `httpRequest.x`, `context.x.y` or `labels.x` are nested
//! (`labels` become `logging.googleapis.com/labels`). Every ERROR event is also an Error
//! Reporting event: `@type`, `serviceContext` and `context.reportLocation` (from the event's
//! call site unless the event gives `context.reportLocation.*` itself).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Error Reporting's type marker.
pub const REPORTED_ERROR_EVENT: &str =
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent";

static PROJECT_ID: OnceLock<String> = OnceLock::new();

/// Sets the project used in `logging.googleapis.com/trace` (first call wins).
pub fn set_project_id(project: &str) {
    let _ = PROJECT_ID.set(project.to_owned());
}

/// The project id the logs use, once known.
pub fn project_id() -> Option<&'static str> {
    PROJECT_ID.get().map(String::as_str)
}

/// `serviceContext` of Error Reporting events.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub service: String,
    pub version: String,
}

impl ServiceContext {
    /// `K_SERVICE` and `K_REVISION` on Cloud Run, else the given defaults.
    pub fn from_env(default_service: &str, default_version: &str) -> Self {
        Self {
            service: std::env::var("K_SERVICE").unwrap_or_else(|_| default_service.to_owned()),
            version: std::env::var("K_REVISION").unwrap_or_else(|_| default_version.to_owned()),
        }
    }
}

/// The JSON layer.
#[derive(Debug)]
pub struct CloudLoggingLayer<W> {
    make_writer: W,
    service: ServiceContext,
}

impl<W> CloudLoggingLayer<W> {
    pub fn new(make_writer: W, service: ServiceContext) -> Self {
        Self {
            make_writer,
            service,
        }
    }
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, W> tracing_subscriber::Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let entry = self.entry(event);
        BUFFER.with(|buffer| {
            let mut buffer = match buffer.try_borrow_mut() {
                Ok(b) => b,
                Err(_) => return, // re-entrant logging from a serializer: drop it
            };
            buffer.clear();
            if serde_json::to_writer(&mut *buffer, &entry).is_ok() {
                buffer.push(b'\n');
                let _ = self
                    .make_writer
                    .make_writer_for(event.metadata())
                    .write_all(&buffer);
            }
            if buffer.capacity() > 64 * 1024 {
                *buffer = Vec::new();
            }
        });
    }
}

impl<W> CloudLoggingLayer<W> {
    fn entry(&self, event: &Event<'_>) -> Map<String, Value> {
        let meta = event.metadata();
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let mut entry = visitor.entry;
        entry.insert("severity".into(), severity(meta.level()).into());
        entry.insert(
            "message".into(),
            Value::String(visitor.message.unwrap_or_default()),
        );
        if let Ok(now) = time::OffsetDateTime::now_utc().format(&Rfc3339) {
            entry.insert("time".into(), now.into());
        }
        let location = source_location(
            meta.file().unwrap_or("<unknown>"),
            meta.line().unwrap_or(0),
            meta.module_path().unwrap_or(meta.target()),
        );
        entry.insert(
            "logging.googleapis.com/sourceLocation".into(),
            Value::Object(location),
        );
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                if let Some(project) = project_id() {
                    entry.insert(
                        "logging.googleapis.com/trace".into(),
                        format!("projects/{project}/traces/{}", sc.trace_id()).into(),
                    );
                }
                entry.insert(
                    "logging.googleapis.com/spanId".into(),
                    sc.span_id().to_string().into(),
                );
                entry.insert(
                    "logging.googleapis.com/trace_sampled".into(),
                    sc.is_sampled().into(),
                );
            }
        });
        if *meta.level() == Level::ERROR {
            entry.insert("@type".into(), REPORTED_ERROR_EVENT.into());
            entry.insert(
                "serviceContext".into(),
                serde_json::json!({
                    "service": self.service.service,
                    "version": self.service.version,
                }),
            );
            let context = entry
                .entry("context")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(context) = context
                && !context.contains_key("reportLocation")
            {
                context.insert(
                    "reportLocation".into(),
                    serde_json::json!({
                        "filePath": meta.file().unwrap_or("<unknown>"),
                        "lineNumber": meta.line().unwrap_or(0),
                        "functionName": meta.module_path().unwrap_or(meta.target()),
                    }),
                );
            }
        }
        entry
    }
}

fn source_location(file: &str, line: u32, function: &str) -> Map<String, Value> {
    let mut location = Map::new();
    location.insert("file".into(), file.into());
    location.insert("line".into(), line.to_string().into());
    location.insert("function".into(), function.into());
    location
}

/// Cloud Logging's `LogSeverity` names.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Collects an event's fields, nesting the structured prefixes.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    entry: Map<String, Value>,
}

impl Fields {
    fn insert(&mut self, name: &str, value: Value) {
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        let (top, path) = match name.split_once('.') {
            Some(("httpRequest", rest)) => ("httpRequest", rest),
            Some(("context", rest)) => ("context", rest),
            Some(("labels", rest)) => ("logging.googleapis.com/labels", rest),
            _ => {
                self.entry.insert(name.to_owned(), value);
                return;
            }
        };
        let mut node = self
            .entry
            .entry(top)
            .or_insert_with(|| Value::Object(Map::new()));
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Value::Object(map) = node else { return };
            if parts.peek().is_none() {
                map.insert(part.to_owned(), value);
                return;
            }
            node = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field.name(), error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field.name(), format!("{value:?}").into());
    }
}

/// An error and its sources on one line: `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A `Duration` in Cloud Logging's JSON form: seconds with 3, 6 or 9 decimals and an `s`.
pub fn format_latency(latency: std::time::Duration) -> String {
    let (secs, nanos) = (latency.as_secs(), latency.subsec_nanos());
    if nanos % 1_000_000 == 0 {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn latency_uses_canonical_decimals() {
        assert_eq!(format_latency(Duration::from_millis(4)), "0.004s");
        assert_eq!(format_latency(Duration::from_micros(4_123)), "0.004123s");
        assert_eq!(
            format_latency(Duration::from_nanos(1_000_000_001)),
            "1.000000001s"
        );
        assert_eq!(format_latency(Duration::ZERO), "0.000s");
    }

    #[test]
    fn dotted_fields_nest() {
        let mut f = Fields::default();
        f.insert("httpRequest.status", 200.into());
        f.insert("context.reportLocation.lineNumber", 7.into());
        f.insert("labels.route", "/items/{id}".into());
        f.insert("plain.field", 1.into());
        f.insert("message", "hello".into());
        let v = Value::Object(f.entry);
        assert_eq!(v["httpRequest"]["status"], 200);
        assert_eq!(v["context"]["reportLocation"]["lineNumber"], 7);
        assert_eq!(v["logging.googleapis.com/labels"]["route"], "/items/{id}");
        assert_eq!(v["plain.field"], 1);
        assert_eq!(f.message.as_deref(), Some("hello"));
    }
}
