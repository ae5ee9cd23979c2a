//! One Cloud Logging JSON line per request, with the fields ESPv2 reports (esp-v2
//! `request_builder.cc FillLogEntry`, gateway-facts §8). The exact jsonPayload of API Gateway's
//! request log is [not confirmed]; these are ESPv2's names.

use std::io::Write as _;
use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::LogSink;

/// What the gateway learnt about one request.
#[derive(Debug, Default)]
pub struct Entry {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub request_size: usize,
    pub response_size: usize,
    pub remote_ip: String,
    pub referer: Option<String>,
    pub protocol: String,
    pub latency: Duration,
    pub api_method: String,
    pub api_key: Option<String>,
    pub api_key_state: &'static str,
    pub response_code_detail: String,
    pub error_cause: Option<String>,
    pub jwt_payloads: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
}

/// Static facts of the gateway, for every line.
#[derive(Debug)]
pub struct Context {
    pub service_name: String,
    pub api_version: String,
    pub config_id: String,
    pub producer_project: String,
}

#[derive(serde::Serialize)]
struct HttpRequest<'a> {
    #[serde(rename = "requestMethod")]
    request_method: &'a str,
    #[serde(rename = "requestUrl")]
    request_url: &'a str,
    status: u16,
    #[serde(rename = "requestSize")]
    request_size: String,
    #[serde(rename = "responseSize")]
    response_size: String,
    #[serde(rename = "remoteIp")]
    remote_ip: &'a str,
    latency: String,
    protocol: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    referer: Option<&'a str>,
}

/// One line: Cloud Logging's special fields, then ESPv2's jsonPayload fields.
#[derive(serde::Serialize)]
struct Line<'a> {
    severity: &'static str,
    time: &'a str,
    message: &'a str,
    #[serde(rename = "httpRequest")]
    http_request: HttpRequest<'a>,
    #[serde(rename = "logging.googleapis.com/trace")]
    trace: String,
    #[serde(rename = "logging.googleapis.com/spanId")]
    span_id: &'a str,
    #[serde(rename = "logging.googleapis.com/trace_sampled")]
    trace_sampled: bool,
    timestamp: &'a str,
    service_config_id: &'a str,
    service_agent: &'static str,
    api_key_state: &'static str,
    http_status_code: u16,
    response_code_detail: &'a str,
    producer_project_id: &'a str,
    api_name: &'a str,
    api_version: &'a str,
    api_method: &'a str,
    location: &'static str,
    log_message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_cause: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_payloads: Option<&'a str>,
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
    if matches!(sink, LogSink::Off) {
        return;
    }
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let message = format!("{} is called", entry.api_method);
    let line = Line {
        severity: if entry.status >= 400 { "ERROR" } else { "INFO" },
        time: &now,
        message: &message,
        http_request: HttpRequest {
            request_method: &entry.method,
            request_url: &entry.url,
            status: entry.status,
            request_size: entry.request_size.to_string(),
            response_size: entry.response_size.to_string(),
            remote_ip: &entry.remote_ip,
            latency: format!("{:.9}s", entry.latency.as_secs_f64()),
            protocol: &entry.protocol,
            referer: entry.referer.as_deref(),
        },
        trace: format!(
            "projects/{}/traces/{}",
            ctx.producer_project, entry.trace_id
        ),
        span_id: &entry.span_id,
        trace_sampled: entry.sampled,
        timestamp: &now,
        service_config_id: &ctx.config_id,
        service_agent: concat!("ESPv2/local-gateway-", env!("CARGO_PKG_VERSION")),
        api_key_state: entry.api_key_state,
        http_status_code: entry.status,
        response_code_detail: &entry.response_code_detail,
        producer_project_id: &ctx.producer_project,
        api_name: &ctx.service_name,
        api_version: &ctx.api_version,
        api_method: &entry.api_method,
        location: "local",
        log_message: &message,
        api_key: entry.api_key.as_deref(),
        error_cause: entry.error_cause.as_deref(),
        jwt_payloads: entry.jwt_payloads.as_deref(),
    };
    match sink {
        LogSink::Stdout => writer().append(&line),
        LogSink::Memory(lines) => {
            if let Ok(value) = serde_json::to_value(&line) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        }
        LogSink::Off => {}
    }
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

    fn append(&self, line: &impl serde::Serialize) {
        let mut pending = self.lock();
        let before = pending.bytes.len();
        if serde_json::to_writer(&mut pending.bytes, line).is_err() {
            pending.bytes.truncate(before);
            return;
        }
        pending.bytes.push(b'\n');
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
