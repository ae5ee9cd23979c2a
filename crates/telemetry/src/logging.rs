//! Logs on stdout: Cloud Logging's structured JSON (one object per line) or a readable format.
//!
//! The JSON layer writes `severity`, `message`, `time`, `logging.googleapis.com/sourceLocation`
//! on every line and, inside a request, `logging.googleapis.com/trace`, `…/spanId` and
//! `…/trace_sampled`, taken from the OpenTelemetry context the HTTP middleware attaches to the
//! request's future. Fields named `httpRequest.x`, `context.x.y` or `labels.x` are nested
//! (`labels` become `logging.googleapis.com/labels`). Every ERROR event is also an Error
//! Reporting event: `@type`, `serviceContext` and `context.reportLocation` (from the event's
//! call site unless the event gives `context.reportLocation.*` itself).
//!
//! A line is encoded straight into per-thread buffers (no JSON tree, no allocation once warm;
//! serde_json only escapes strings) and handed to the writer whole, in one `write_all`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;

use opentelemetry::trace::TraceContextExt as _;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::{PlatformIdentity, ServiceInfo};

/// Error Reporting's type marker.
pub const REPORTED_ERROR_EVENT: &str =
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent";

/// `serviceContext` of Error Reporting events.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub service: String,
    pub version: String,
}

impl ServiceContext {
    /// The Cloud Run service and revision, else the build's name and version.
    pub fn new(identity: &PlatformIdentity, service: &ServiceInfo) -> Self {
        Self {
            service: identity
                .service
                .clone()
                .unwrap_or_else(|| service.name.clone()),
            version: identity
                .revision
                .clone()
                .unwrap_or_else(|| service.version.clone()),
        }
    }
}

/// The JSON layer.
#[derive(Debug)]
pub struct CloudLoggingLayer<W> {
    make_writer: W,
    /// `,"@type":…,"serviceContext":{…}` of Error Reporting events, encoded once.
    error_event: Vec<u8>,
    /// `,"logging.googleapis.com/trace":"projects/{project}/traces/` with the project
    /// JSON-escaped, when the project is known.
    trace_prefix: Option<Vec<u8>>,
}

impl<W> CloudLoggingLayer<W> {
    /// `project` is the one of `logging.googleapis.com/trace`: without it, lines inside a request
    /// carry the span id but no trace.
    pub fn new(make_writer: W, service: &ServiceContext, project: Option<&str>) -> Self {
        let mut error_event = br#","@type":"#.to_vec();
        json_str(&mut error_event, REPORTED_ERROR_EVENT);
        error_event.extend_from_slice(br#","serviceContext":{"service":"#);
        json_str(&mut error_event, &service.service);
        error_event.extend_from_slice(br#","version":"#);
        json_str(&mut error_event, &service.version);
        error_event.push(b'}');
        let trace_prefix = project.map(|project| {
            let mut prefix = br#","logging.googleapis.com/trace":"#.to_vec();
            json_str(&mut prefix, &format!("projects/{project}/traces/"));
            prefix.pop(); // the closing quote: the trace id follows
            prefix
        });
        Self {
            make_writer,
            error_event,
            trace_prefix,
        }
    }
}

thread_local! {
    /// Per-thread scratch space: a line is encoded with no allocation once it has warmed up.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl<S, W> tracing_subscriber::Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        SCRATCH.with(|scratch| {
            // Re-entrant logging (from a Debug impl inside this event): dropped.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return;
            };
            let scratch = &mut *scratch;
            scratch.clear();
            event.record(&mut Recorder(scratch));
            self.encode(event.metadata(), scratch);
            let _ = self
                .make_writer
                .make_writer_for(event.metadata())
                .write_all(&scratch.out);
            scratch.shrink();
        });
    }
}

/// Where an event was logged: for `sourceLocation` and Error Reporting's `reportLocation`.
struct Location {
    file: &'static str,
    line: u32,
    function: &'static str,
}

impl Location {
    fn of(meta: &'static Metadata<'static>) -> Self {
        Self {
            file: meta.file().unwrap_or("<unknown>"),
            line: meta.line().unwrap_or(0),
            function: meta.module_path().unwrap_or(meta.target()),
        }
    }
}

impl<W> CloudLoggingLayer<W> {
    /// Encodes one line into `scratch.out`, its fields already recorded.
    fn encode(&self, meta: &'static Metadata<'static>, scratch: &mut Scratch) {
        let Scratch {
            out,
            text,
            fields,
            message,
            order,
            open,
        } = scratch;
        let location = Location::of(meta);
        let error = *meta.level() == Level::ERROR;
        let message = message.clone().map_or("", |m| &text[m]);
        encode_head(out, meta.level(), message, &location);
        self.encode_trace(out);
        if error {
            add_report_location(fields, &location);
        }
        // Plain fields in the order given; nested ones grouped by path.
        order.clear();
        for (i, (name, value)) in fields.iter().enumerate() {
            match nested(name) {
                Some((top, rest)) => order.push((name, top, rest, i)),
                None => {
                    out.push(b',');
                    json_str(out, name);
                    out.push(b':');
                    value.encode(out, text);
                }
            }
        }
        order.sort_by_key(|&(name, ..)| name);
        encode_nested(out, text, fields, order, open);
        if error {
            out.extend_from_slice(&self.error_event);
        }
        out.extend_from_slice(b"}\n");
    }

    /// `logging.googleapis.com/trace`, `…/spanId` and `…/trace_sampled` of the current span.
    fn encode_trace(&self, out: &mut Vec<u8>) {
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                if let Some(prefix) = &self.trace_prefix {
                    out.extend_from_slice(prefix);
                    let _ = write!(out, "{}\"", sc.trace_id());
                }
                let _ = write!(
                    out,
                    r#","logging.googleapis.com/spanId":"{}","logging.googleapis.com/trace_sampled":{}"#,
                    sc.span_id(),
                    sc.is_sampled()
                );
            }
        });
    }
}

/// Closes `time` and opens `sourceLocation` up to its `file` value.
const SOURCE_LOCATION_FILE: &[u8] = br#"","logging.googleapis.com/sourceLocation":{"file":"#;

/// `{"severity":…,"message":…,"time":…,"logging.googleapis.com/sourceLocation":{…}` (the object
/// left open).
fn encode_head(out: &mut Vec<u8>, level: &Level, message: &str, location: &Location) {
    out.extend_from_slice(br#"{"severity":""#);
    out.extend_from_slice(severity(level).as_bytes());
    out.extend_from_slice(br#"","message":"#);
    json_str(out, message);
    out.extend_from_slice(br#","time":""#);
    let _ = time::OffsetDateTime::now_utc().format_into(out, &Rfc3339);
    out.extend_from_slice(SOURCE_LOCATION_FILE);
    json_str(out, location.file);
    let _ = write!(out, r#","line":"{}","function":"#, location.line);
    json_str(out, location.function);
    out.push(b'}');
}

/// Error Reporting's `context.reportLocation`, from the call site unless the event gives its own.
fn add_report_location(fields: &mut Vec<(&'static str, Scalar)>, location: &Location) {
    if fields
        .iter()
        .any(|(name, _)| name.starts_with("context.reportLocation."))
    {
        return;
    }
    fields.extend([
        (
            "context.reportLocation.filePath",
            Scalar::Static(location.file),
        ),
        (
            "context.reportLocation.lineNumber",
            Scalar::U64(location.line.into()),
        ),
        (
            "context.reportLocation.functionName",
            Scalar::Static(location.function),
        ),
    ]);
}

/// The nested fields, `order` sorted by name, as objects: each path's objects opened once.
fn encode_nested(
    out: &mut Vec<u8>,
    text: &str,
    fields: &[(&'static str, Scalar)],
    order: &[(&'static str, &'static str, &'static str, usize)],
    open: &mut Vec<&'static str>,
) {
    open.clear();
    // Whether the innermost open object has no key yet (the root already has some).
    let mut fresh = false;
    for &(_, top, rest, i) in order {
        let value = &fields[i].1;
        let (parents, leaf) = match rest.rsplit_once('.') {
            Some((parents, leaf)) => (Some(parents), leaf),
            None => (None, rest),
        };
        let path = || std::iter::once(top).chain(parents.into_iter().flat_map(|p| p.split('.')));
        // Close the objects this field is not in, open the ones it is in.
        let common = open
            .iter()
            .zip(path())
            .take_while(|(a, b)| **a == *b)
            .count();
        if open.len() > common {
            close(out, open, common);
            fresh = false;
        }
        for segment in path().skip(common) {
            key(out, segment, &mut fresh);
            out.push(b'{');
            open.push(segment);
            fresh = true;
        }
        key(out, leaf, &mut fresh);
        value.encode(out, text);
    }
    close(out, open, 0);
}

/// Closes the open objects deeper than `depth`.
fn close(out: &mut Vec<u8>, open: &mut Vec<&'static str>, depth: usize) {
    while open.len() > depth {
        open.pop();
        out.push(b'}');
    }
}

/// `,"key":` (no comma as the first key of an object).
fn key(out: &mut Vec<u8>, key: &str, fresh: &mut bool) {
    if !std::mem::take(fresh) {
        out.push(b',');
    }
    json_str(out, key);
    out.push(b':');
}

/// Splits a nested field name into its top-level key and the rest: `httpRequest.x`,
/// `context.x.y` and `labels.x` (as `logging.googleapis.com/labels`).
fn nested(name: &'static str) -> Option<(&'static str, &'static str)> {
    match name.split_once('.') {
        Some(("httpRequest", rest)) => Some(("httpRequest", rest)),
        Some(("context", rest)) => Some(("context", rest)),
        Some(("labels", rest)) => Some(("logging.googleapis.com/labels", rest)),
        _ => None,
    }
}

/// A JSON string (quoted and escaped) appended to `out`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
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

/// One field value; text lives in [`Scratch::text`].
#[derive(Debug, Clone)]
enum Scalar {
    Text(Range<usize>),
    Static(&'static str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Scalar {
    fn encode(&self, out: &mut Vec<u8>, text: &str) {
        match self {
            Scalar::Text(range) => json_str(out, &text[range.clone()]),
            Scalar::Static(s) => json_str(out, s),
            Scalar::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Scalar::U64(n) => {
                let _ = write!(out, "{n}");
            }
            // JSON has no NaN or infinity: those become null, as serde_json writes them.
            Scalar::F64(n) => {
                let _ = serde_json::to_writer(out, n);
            }
            Scalar::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
}

/// Reused buffers for one line: its fields, their text and the encoded line.
#[derive(Debug, Default)]
struct Scratch {
    out: Vec<u8>,
    text: String,
    fields: Vec<(&'static str, Scalar)>,
    message: Option<Range<usize>>,
    /// The nested fields (name, top-level key, the rest of the path, index), sorted by name.
    order: Vec<(&'static str, &'static str, &'static str, usize)>,
    /// The nested objects open while encoding.
    open: Vec<&'static str>,
}

impl Scratch {
    fn clear(&mut self) {
        self.out.clear();
        self.text.clear();
        self.fields.clear();
        self.message = None;
    }

    /// Gives back the memory of an unusually large line.
    fn shrink(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.out.capacity() > KEEP || self.text.capacity() > KEEP {
            *self = Scratch::default();
        }
    }

    fn text(&mut self, write: impl FnOnce(&mut String)) -> Range<usize> {
        let start = self.text.len();
        write(&mut self.text);
        start..self.text.len()
    }

    fn insert(&mut self, field: &Field, value: Scalar) {
        if field.name() == "message" {
            self.message = Some(match value {
                Scalar::Text(range) => range,
                other => self.text(|t| {
                    let _ = match other {
                        Scalar::Static(s) => t.write_str(s),
                        Scalar::I64(n) => write!(t, "{n}"),
                        Scalar::U64(n) => write!(t, "{n}"),
                        Scalar::F64(n) => write!(t, "{n}"),
                        Scalar::Bool(b) => write!(t, "{b}"),
                        Scalar::Text(_) => Ok(()),
                    };
                }),
            });
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

/// Records an event's fields into the scratch buffers.
struct Recorder<'a>(&'a mut Scratch);

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let range = self.0.text(|t| t.push_str(value));
        self.0.insert(field, Scalar::Text(range));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field, Scalar::Bool(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field, Scalar::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field, Scalar::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field, Scalar::F64(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let range = self.0.text(|t| write_error_chain(t, value));
        self.0.insert(field, Scalar::Text(range));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let range = self.0.text(|t| {
            let _ = write!(t, "{value:?}");
        });
        self.0.insert(field, Scalar::Text(range));
    }
}

/// An error and its sources on one line: `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = String::new();
    write_error_chain(&mut out, error);
    out
}

fn write_error_chain(out: &mut String, error: &dyn std::error::Error) {
    let _ = write!(out, "{error}");
    let mut source = error.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
}

/// Displays a `Duration` in Cloud Logging's JSON form: seconds with 3, 6 or 9 decimals and an
/// `s` (for log fields: nothing is allocated).
#[derive(Debug, Clone, Copy)]
pub struct Latency(pub std::time::Duration);

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if nanos % 1_000_000 == 0 {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn format_latency(latency: Duration) -> String {
        Latency(latency).to_string()
    }

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

    /// The lines `emit` logs through the layer, parsed.
    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        lines_in_project(Some("p"), emit)
    }

    /// [`lines`] with the trace's project given.
    fn lines_in_project(project: Option<&str>, emit: impl FnOnce()) -> Vec<serde_json::Value> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = CloudLoggingLayer::new(
            move || writer.clone(),
            &ServiceContext {
                service: "svc".into(),
                version: "v\"1".into(),
            },
            project,
        );
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn dotted_fields_nest_wherever_they_appear() {
        let lines = lines(|| {
            tracing::info!(
                httpRequest.status = 200,
                context.reportLocation.lineNumber = 7,
                plain.field = 1.5,
                labels.route = "/items/{id}",
                httpRequest.requestUrl = %"http://h/a?b=\"c\"",
                context.httpRequest.method = "GET",
                flag = true,
                "hello {}",
                "\u{1F600}\n"
            );
        });
        let v = &lines[0];
        assert_eq!(v["severity"], "INFO");
        assert_eq!(v["message"], "hello \u{1F600}\n");
        assert_eq!(v["httpRequest"]["status"], 200);
        assert_eq!(v["httpRequest"]["requestUrl"], "http://h/a?b=\"c\"");
        assert_eq!(v["context"]["reportLocation"]["lineNumber"], 7);
        assert_eq!(v["context"]["httpRequest"]["method"], "GET");
        assert_eq!(v["logging.googleapis.com/labels"]["route"], "/items/{id}");
        assert_eq!(v["plain.field"], 1.5);
        assert_eq!(v["flag"], true);
        assert_eq!(v["logging.googleapis.com/sourceLocation"]["file"], file!());
        assert!(v.get("@type").is_none());
        assert!(
            v.get("logging.googleapis.com/trace").is_none(),
            "no span: {v}"
        );
    }

    #[test]
    fn errors_are_error_reporting_events() {
        let lines = lines(|| {
            tracing::error!(error = %"disk on fire", "it broke");
            tracing::error!(
                context.reportLocation.filePath = "a.rs",
                context.reportLocation.lineNumber = 3u32,
                context.reportLocation.functionName = "f",
                "given location"
            );
            tracing::warn!(n = -3i64, "not an error");
        });
        let [own, given, warn] = &lines[..] else {
            panic!("{lines:?}")
        };
        for v in [own, given] {
            assert_eq!(v["severity"], "ERROR");
            assert_eq!(v["@type"], REPORTED_ERROR_EVENT);
            assert_eq!(v["serviceContext"]["service"], "svc");
            assert_eq!(v["serviceContext"]["version"], "v\"1");
        }
        let location = &own["context"]["reportLocation"];
        assert_eq!(location["filePath"], file!());
        assert!(location["lineNumber"].as_u64().unwrap() > 0);
        assert_eq!(location["functionName"], module_path!());
        assert_eq!(own["error"], "disk on fire");
        assert_eq!(
            given["context"]["reportLocation"],
            serde_json::json!({"filePath": "a.rs", "lineNumber": 3, "functionName": "f"})
        );
        assert_eq!(warn["severity"], "WARNING");
        assert_eq!(warn["n"], -3);
        assert!(warn.get("@type").is_none());
    }

    #[test]
    fn lines_inside_a_span_name_the_trace_in_the_project_given() {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        };
        let span = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let in_span = || {
            let _cx = opentelemetry::Context::new()
                .with_remote_span_context(span.clone())
                .attach();
            tracing::info!("inside");
        };
        let with = lines_in_project(Some("my-\"project"), in_span);
        assert_eq!(
            with[0]["logging.googleapis.com/trace"],
            "projects/my-\"project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(with[0]["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(with[0]["logging.googleapis.com/trace_sampled"], true);
        let without = lines_in_project(None, in_span);
        assert!(
            without[0].get("logging.googleapis.com/trace").is_none(),
            "{}",
            without[0]
        );
        assert_eq!(
            without[0]["logging.googleapis.com/spanId"],
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn the_service_context_is_cloud_runs_else_the_builds() {
        let build = ServiceInfo {
            name: "items-service".into(),
            version: "1.2.3".into(),
        };
        let off = ServiceContext::new(&PlatformIdentity::default(), &build);
        assert_eq!(
            (off.service.as_str(), off.version.as_str()),
            ("items-service", "1.2.3")
        );
        let cloud_run = PlatformIdentity {
            service: Some("items".into()),
            revision: Some("items-00042-abc".into()),
            ..PlatformIdentity::default()
        };
        let on = ServiceContext::new(&cloud_run, &build);
        assert_eq!(
            (on.service.as_str(), on.version.as_str()),
            ("items", "items-00042-abc")
        );
    }
}
