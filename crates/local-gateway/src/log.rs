//! One Cloud Logging JSON line per request, with the fields ESPv2 reports (esp-v2
//! `request_builder.cc FillLogEntry`; the request log's name and resource: Cloud Logging's
//! "Platform logs" page, https://cloud.google.com/logging/docs/api/platform-logs). The exact jsonPayload of API Gateway's
//! request log is [not confirmed]; these are ESPv2's names.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::LogSink;

/// What the gateway learnt about one request.
#[derive(Debug)]
pub struct Entry {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub request_size: usize,
    pub response_size: usize,
    pub remote_ip: String,
    pub referer: Option<String>,
    pub protocol: &'static str,
    pub latency: Duration,
    pub api_method: Arc<ApiMethod>,
    pub api_key: Option<String>,
    pub api_key_state: &'static str,
    pub response_code_detail: Cow<'static, str>,
    pub error_cause: Option<String>,
    pub jwt_payloads: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
}

/// ESPv2's `api_method` of an operation and the log's `<api_method> is called`, made once per
/// operation with their JSON string forms. No `Default`: an empty one would write invalid JSON.
#[derive(Debug)]
pub struct ApiMethod {
    /// The name as a JSON string literal (quotes included).
    json: String,
    /// `"<name> is called"` as a JSON string literal.
    message_json: String,
}

impl ApiMethod {
    pub fn new(name: String) -> Self {
        let json = json_string(&name);
        let message_json = json_string(&format!("{name} is called"));
        Self { json, message_json }
    }
}

/// Static facts of the gateway, for every line, with the fields they fill already in JSON.
#[derive(Debug)]
pub struct Context {
    /// `"logging.googleapis.com/trace":"projects/<producer project>/traces/` (the trace id and
    /// its closing quote follow).
    trace_prefix: String,
    /// `,"timestamp":` … up to `"api_key_state":` exclusive: service_config_id, service_agent.
    after_timestamp: String,
    /// From `,"producer_project_id":` to `,"api_method":` inclusive.
    after_detail: String,
}

impl Context {
    pub fn new(
        service_name: &str,
        api_version: &str,
        config_id: &str,
        producer_project: &str,
    ) -> Self {
        let trace_prefix = json_string(&format!("projects/{producer_project}/traces/"));
        Self {
            trace_prefix: format!(
                ",\"logging.googleapis.com/trace\":{}",
                trace_prefix.trim_end_matches('"')
            ),
            after_timestamp: format!(
                ",\"service_config_id\":{},\"service_agent\":{},\"api_key_state\":",
                json_string(config_id),
                json_string(SERVICE_AGENT)
            ),
            after_detail: format!(
                ",\"producer_project_id\":{},\"api_name\":{},\"api_version\":{},\"api_method\":",
                json_string(producer_project),
                json_string(service_name),
                json_string(api_version)
            ),
        }
    }
}

const SERVICE_AGENT: &str = concat!("ESPv2/local-gateway-", env!("CARGO_PKG_VERSION"));

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `requestUrl`: the path and the query, with the values of the query parameters in `params`
/// (where JWTs travel) replaced by `REDACTED`. ESPv2 reports the request's `:path` whole; the
/// local log, read in terminals and CI artefacts, keeps tokens out (API keys stay: ESPv2
/// reports them as `api_key`).
pub fn request_url(path: &str, query: Option<&str>, params: &[String]) -> String {
    let Some(query) = query else {
        return path.to_owned();
    };
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        params.iter().any(|p| p == name)
    };
    let mut out = String::with_capacity(path.len() + 1 + query.len());
    out.push_str(path);
    if !query.split('&').any(secret) {
        out.push('?');
        out.push_str(query);
        return out;
    }
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    out
}

pub fn write(sink: &LogSink, ctx: &Context, entry: Entry) {
    match sink {
        LogSink::Off => {}
        LogSink::Stdout => writer().append(|out| line(out, ctx, &entry)),
        LogSink::Memory(lines) => {
            let mut out = Vec::new();
            line(&mut out, ctx, &entry);
            if let Ok(value) = serde_json::from_slice(&out) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        }
    }
}

/// One line: Cloud Logging's special fields, then ESPv2's jsonPayload fields, as JSON.
///
/// Written by hand from pieces made once per gateway ([`Context`]) and per operation
/// ([`ApiMethod`]), with only the request's own values escaped: serialising the line with serde
/// (every field escaped, the times through `time`'s formatter, the latency through float
/// formatting) was 16k of the 138k instructions per proxied `GET /items/{id}` (callgrind, the
/// `local_gateway` example under `wrk -c50`); see the crate's docs for the figure after.
fn line(out: &mut Vec<u8>, ctx: &Context, e: &Entry) {
    let now = OffsetDateTime::now_utc();
    let mut time = [0u8; 30];
    let time = rfc3339(now, &mut time);
    out.extend_from_slice(b"{\"severity\":");
    out.extend_from_slice(if e.status >= 400 {
        b"\"ERROR\""
    } else {
        b"\"INFO\""
    });
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\",\"message\":");
    out.extend_from_slice(e.api_method.message_json.as_bytes());
    out.extend_from_slice(b",\"httpRequest\":{\"requestMethod\":");
    escaped(out, &e.method);
    out.extend_from_slice(b",\"requestUrl\":");
    escaped(out, &e.url);
    out.extend_from_slice(b",\"status\":");
    number(out, u64::from(e.status));
    out.extend_from_slice(b",\"requestSize\":\"");
    number(out, e.request_size as u64);
    out.extend_from_slice(b"\",\"responseSize\":\"");
    number(out, e.response_size as u64);
    out.extend_from_slice(b"\",\"remoteIp\":");
    escaped(out, &e.remote_ip);
    // `{:.9}s` of the seconds as a float, from the exact nanoseconds.
    out.extend_from_slice(b",\"latency\":\"");
    number(out, e.latency.as_secs());
    out.push(b'.');
    let nanos = e.latency.subsec_nanos();
    let mut digits = [b'0'; 9];
    let mut n = nanos;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(b"s\",\"protocol\":");
    escaped(out, e.protocol);
    if let Some(referer) = &e.referer {
        out.extend_from_slice(b",\"referer\":");
        escaped(out, referer);
    }
    out.push(b'}');
    out.extend_from_slice(ctx.trace_prefix.as_bytes());
    out.extend_from_slice(e.trace_id.as_bytes());
    out.extend_from_slice(b"\",\"logging.googleapis.com/spanId\":");
    escaped(out, &e.span_id);
    out.extend_from_slice(b",\"logging.googleapis.com/trace_sampled\":");
    out.extend_from_slice(if e.sampled { b"true" } else { b"false" });
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(time);
    out.push(b'"');
    out.extend_from_slice(ctx.after_timestamp.as_bytes());
    escaped(out, e.api_key_state);
    out.extend_from_slice(b",\"http_status_code\":");
    number(out, u64::from(e.status));
    out.extend_from_slice(b",\"response_code_detail\":");
    escaped(out, &e.response_code_detail);
    out.extend_from_slice(ctx.after_detail.as_bytes());
    out.extend_from_slice(e.api_method.json.as_bytes());
    out.extend_from_slice(b",\"location\":\"local\",\"log_message\":");
    out.extend_from_slice(e.api_method.message_json.as_bytes());
    for (name, value) in [
        ("api_key", &e.api_key),
        ("error_cause", &e.error_cause),
        ("jwt_payloads", &e.jwt_payloads),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            escaped(out, value);
        }
    }
    out.extend_from_slice(b"}\n");
}

/// `s` as a JSON string (serde_json's escaping).
fn escaped(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `time`'s `Rfc3339` of a UTC time (`2026-12-05T10:18:36.21575709Z`: the fraction without
/// trailing zeros, none when it is zero), for years 0 to 9999.
fn rfc3339(t: OffsetDateTime, buf: &mut [u8; 30]) -> &[u8] {
    fn two(buf: &mut [u8], at: usize, n: u8) {
        buf[at] = b'0' + n / 10;
        buf[at + 1] = b'0' + n % 10;
    }
    let (date, clock) = (t.date(), t.time());
    let year = u16::try_from(date.year()).unwrap_or(0).min(9999);
    two(buf, 0, (year / 100) as u8);
    two(buf, 2, (year % 100) as u8);
    buf[4] = b'-';
    two(buf, 5, u8::from(date.month()));
    buf[7] = b'-';
    two(buf, 8, date.day());
    buf[10] = b'T';
    two(buf, 11, clock.hour());
    buf[13] = b':';
    two(buf, 14, clock.minute());
    buf[16] = b':';
    two(buf, 17, clock.second());
    let mut len = 19;
    let mut nanos = clock.nanosecond();
    if nanos != 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        buf[len] = b'.';
        for i in (0..width).rev() {
            buf[len + 1 + i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        len += 1 + width;
    }
    buf[len] = b'Z';
    &buf[..=len]
}

/// The line [`line`] writes, field by field: the schema the unit tests read every written line
/// into (unknown fields refused), and that `cargo xtask lint`'s log-field check reads.
#[cfg(test)]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Line {
    severity: String,
    time: String,
    message: String,
    #[serde(rename = "httpRequest")]
    http_request: HttpRequest,
    #[serde(rename = "logging.googleapis.com/trace")]
    trace: String,
    #[serde(rename = "logging.googleapis.com/spanId")]
    span_id: String,
    #[serde(rename = "logging.googleapis.com/trace_sampled")]
    trace_sampled: bool,
    timestamp: String,
    service_config_id: String,
    service_agent: String,
    api_key_state: String,
    http_status_code: u16,
    response_code_detail: String,
    producer_project_id: String,
    api_name: String,
    api_version: String,
    api_method: String,
    location: String,
    log_message: String,
    api_key: Option<String>,
    error_cause: Option<String>,
    jwt_payloads: Option<String>,
}

/// `httpRequest` of [`Line`].
#[cfg(test)]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct HttpRequest {
    #[serde(rename = "requestMethod")]
    request_method: String,
    #[serde(rename = "requestUrl")]
    request_url: String,
    status: u16,
    #[serde(rename = "requestSize")]
    request_size: String,
    #[serde(rename = "responseSize")]
    response_size: String,
    #[serde(rename = "remoteIp")]
    remote_ip: String,
    latency: String,
    protocol: String,
    referer: Option<String>,
}

/// Waits (at most a second) until the lines logged so far are on stdout.
pub fn flush() {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    writer().lock().flushes.push(tx);
    writer().wake.notify_one();
    let _ = rx.recv_timeout(Duration::from_secs(1));
}

/// How long the writer thread gathers lines before one write.
const GATHER: Duration = Duration::from_millis(50);
/// A buffer this full is written at once.
const WRITE_AT: usize = 1 << 20;

/// Request threads serialise their line straight into a shared buffer; one writer thread wakes
/// when the buffer stops being empty, gathers lines for [`GATHER`], and writes them in one system
/// call. Handing each line through a channel woke the writer thread once per request: with
/// `cargo xtask bench --through-gateway` that wake-up and the writer's futex wait were 11% of the
/// gateway's CPU samples (`perf record`), and this buffer brings them to a few wake-ups a second.
struct Writer {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Answered once the bytes before them are written.
    flushes: Vec<SyncSender<()>>,
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what `write` puts in the buffer (one line, its newline included).
    fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut pending = self.lock();
        let before = pending.bytes.len();
        write(&mut pending.bytes);
        if before == 0 || pending.bytes.len() >= WRITE_AT {
            self.wake.notify_one();
        }
    }

    /// The writer thread's loop: wait for a line, gather more, write them all.
    fn run(&self) {
        let mut spare = Vec::with_capacity(64 * 1024);
        loop {
            let mut pending = self.lock();
            while pending.bytes.is_empty() && pending.flushes.is_empty() {
                pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            if pending.flushes.is_empty() && pending.bytes.len() < WRITE_AT {
                pending = self
                    .wake
                    .wait_timeout(pending, GATHER)
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
            }
            std::mem::swap(&mut pending.bytes, &mut spare);
            let flushes = std::mem::take(&mut pending.flushes);
            drop(pending);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            drop(out);
            spare.clear();
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
}

fn writer() -> &'static Writer {
    static WRITER: OnceLock<&'static Writer> = OnceLock::new();
    WRITER.get_or_init(|| {
        let writer: &'static Writer = Box::leak(Box::new(Writer {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("local-gateway-log".into())
            .spawn(move || writer.run())
            .expect("the log writer thread starts");
        writer
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn times_are_written_as_times_rfc3339_writes_them() {
        for (secs, nanos) in [
            (1_796_466_000, 0),
            (1_796_466_000, 215_757_090),
            (1_796_466_001, 100),
            (0, 999_999_999),
            (253_402_300_799, 1),
        ] {
            let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range")
                + time::Duration::nanoseconds(nanos);
            let mut buf = [0u8; 30];
            let ours = std::str::from_utf8(rfc3339(t, &mut buf)).expect("ascii");
            assert_eq!(ours, t.format(&Rfc3339).expect("formats"), "{secs} {nanos}");
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_espv2s_fields() {
        let ctx = Context::new("api.example.com", "1.0", "cfg\"1", "proj");
        let entry = Entry {
            method: "GET".into(),
            url: "/items/1?q=\"x\"\n".into(),
            status: 404,
            request_size: 12,
            response_size: 34,
            remote_ip: "127.0.0.1".into(),
            referer: Some("https://r/".into()),
            protocol: "HTTP/1.1",
            latency: Duration::new(2, 5_000),
            api_method: Arc::new(ApiMethod::new("1.api_example_com.get_item".into())),
            api_key: Some("k".into()),
            api_key_state: "VERIFIED",
            response_code_detail: "via_upstream".into(),
            error_cause: None,
            jwt_payloads: Some("sub=a;".into()),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            sampled: true,
        };
        let mut out = Vec::new();
        line(&mut out, &ctx, &entry);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice::<Line>(&out).expect("the schema's fields, no other");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["severity"], "ERROR");
        assert_eq!(v["time"], v["timestamp"]);
        assert_eq!(v["message"], "1.api_example_com.get_item is called");
        assert_eq!(v["log_message"], v["message"]);
        assert_eq!(v["api_method"], "1.api_example_com.get_item");
        let http = &v["httpRequest"];
        assert_eq!(http["requestUrl"], "/items/1?q=\"x\"\n");
        assert_eq!(http["status"], 404);
        assert_eq!(http["requestSize"], "12");
        assert_eq!(http["responseSize"], "34");
        assert_eq!(http["latency"], format!("{:.9}s", 2.000_005_f64));
        assert_eq!(http["referer"], "https://r/");
        assert_eq!(
            v["logging.googleapis.com/trace"],
            "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(v["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(v["logging.googleapis.com/trace_sampled"], true);
        assert_eq!(v["service_config_id"], "cfg\"1");
        assert_eq!(v["api_name"], "api.example.com");
        assert_eq!(v["api_version"], "1.0");
        assert_eq!(v["producer_project_id"], "proj");
        assert_eq!(v["http_status_code"], 404);
        assert_eq!(v["api_key"], "k");
        assert_eq!(v["jwt_payloads"], "sub=a;");
        assert!(v.get("error_cause").is_none());
        assert_eq!(v["location"], "local");
        // Without the optional fields.
        let bare = Entry {
            referer: None,
            api_key: None,
            jwt_payloads: None,
            ..entry
        };
        let mut out = Vec::new();
        line(&mut out, &ctx, &bare);
        serde_json::from_slice::<Line>(&out).expect("the schema's fields, no other");
    }
}
