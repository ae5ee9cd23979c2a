//! One Cloud Logging JSON line per request, with the fields ESPv2 reports (esp-v2
//! `request_builder.cc FillLogEntry`, gateway-facts §8). The exact jsonPayload of API Gateway's
//! request log is [not confirmed]; these are ESPv2's names.

use std::io::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::LogSink;

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

pub fn write(sink: &LogSink, ctx: &Context, entry: Entry) {
    if matches!(sink, LogSink::Off) {
        return;
    }
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut http = Map::new();
    http.insert("requestMethod".into(), entry.method.clone().into());
    http.insert("requestUrl".into(), entry.url.into());
    http.insert("status".into(), entry.status.into());
    http.insert("requestSize".into(), entry.request_size.to_string().into());
    http.insert(
        "responseSize".into(),
        entry.response_size.to_string().into(),
    );
    http.insert("remoteIp".into(), entry.remote_ip.into());
    http.insert(
        "latency".into(),
        format!("{:.9}s", entry.latency.as_secs_f64()).into(),
    );
    http.insert("protocol".into(), entry.protocol.into());
    if let Some(ua) = entry.user_agent {
        http.insert("userAgent".into(), ua.into());
    }
    if let Some(r) = entry.referer {
        http.insert("referer".into(), r.into());
    }
    let mut line = json!({
        "severity": if entry.status >= 400 { "ERROR" } else { "INFO" },
        "time": now,
        "message": format!("{} is called", entry.api_method),
        "httpRequest": Value::Object(http),
        "logging.googleapis.com/trace": format!("projects/{}/traces/{}", ctx.producer_project, entry.trace_id),
        "logging.googleapis.com/spanId": entry.span_id,
        "logging.googleapis.com/trace_sampled": entry.sampled,
        "timestamp": now,
        "service_config_id": ctx.config_id,
        "service_agent": concat!("ESPv2/local-gateway-", env!("CARGO_PKG_VERSION")),
        "api_key_state": entry.api_key_state,
        "http_status_code": entry.status,
        "response_code_detail": entry.response_code_detail,
        "producer_project_id": ctx.producer_project,
        "api_name": ctx.service_name,
        "api_version": ctx.api_version,
        "api_method": entry.api_method,
        "location": "local",
        "log_message": format!("{} is called", entry.api_method),
    });
    if let Value::Object(map) = &mut line {
        if let Some(key) = entry.api_key {
            map.insert("api_key".into(), key.into());
        }
        if let Some(cause) = entry.error_cause {
            map.insert("error_cause".into(), cause.into());
        }
        if let Some(jwt) = entry.jwt_payloads {
            map.insert("jwt_payloads".into(), jwt);
        }
    }
    match sink {
        LogSink::Stdout => {
            let mut text = line.to_string();
            text.push('\n');
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
        LogSink::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
        LogSink::Off => {}
    }
}
