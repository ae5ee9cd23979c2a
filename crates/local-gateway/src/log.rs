//! One Cloud Logging JSON line per request, with the fields ESPv2 reports (esp-v2
//! `request_builder.cc FillLogEntry`, gateway-facts §8). The exact jsonPayload of API Gateway's
//! request log is [not confirmed]; these are ESPv2's names.

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;
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
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub protocol: String,
    pub latency: Duration,
    pub api_method: String,
    pub api_key: Option<String>,
    pub api_key_state: &'static str,
    pub response_code_detail: String,
    pub error_cause: Option<String>,
    pub jwt_payloads: Option<Value>,
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
    #[serde(rename = "userAgent", skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
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
    jwt_payloads: Option<&'a Value>,
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
            user_agent: entry.user_agent.as_deref(),
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
        jwt_payloads: entry.jwt_payloads.as_ref(),
    };
    match sink {
        LogSink::Stdout => {
            let Ok(mut text) = serde_json::to_vec(&line) else {
                return;
            };
            text.push(b'\n');
            stdout_writer().send(Message::Line(text)).ok();
        }
        LogSink::Memory(lines) => {
            if let Ok(value) = serde_json::to_value(&line) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        }
        LogSink::Off => {}
    }
}

enum Message {
    Line(Vec<u8>),
    /// Answered once everything sent before is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Waits (at most a second) until the lines logged so far are on stdout.
pub fn flush() {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    if stdout_writer().send(Message::Flush(tx)).is_ok() {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(1));
    }
}

/// Request threads hand their lines to one writer thread, which writes whatever has queued up
/// in one system call (instead of one per line).
fn stdout_writer() -> &'static std::sync::mpsc::Sender<Message> {
    static WRITER: std::sync::OnceLock<std::sync::mpsc::Sender<Message>> =
        std::sync::OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("local-gateway-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(64 * 1024);
                let mut waiting = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        match message {
                            Message::Line(line) => batch.extend_from_slice(&line),
                            Message::Flush(done) => waiting.push(done),
                        }
                        if batch.len() < 1024 * 1024 {
                            next = rx.try_recv().ok();
                        }
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&batch).and_then(|()| out.flush());
                    batch.clear();
                    for done in waiting.drain(..) {
                        let _ = done.send(());
                    }
                }
            })
            .expect("the log writer thread starts");
        tx
    })
}
