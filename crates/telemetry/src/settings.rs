//! The `log` and `telemetry` settings sections.

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line in Cloud Logging's structured-logging shape.
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// `log.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `items_http=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
    /// One access-log entry (with `httpRequest`) per request.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// Share of health-probe requests (`/healthz`, `/readyz`) that get an access-log entry:
    /// 0 silences them, 1 logs every one.
    #[serde(default)]
    pub health_probe_sample_ratio: f64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
            access_log: true,
            health_probe_sample_ratio: 0.0,
        }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

fn yes() -> bool {
    true
}

/// Where traces and metrics go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exporter {
    /// Nothing is exported; trace ids are still made for log correlation and problem bodies.
    #[default]
    None,
    /// OTLP/HTTP (protobuf) to `otlp_endpoint`, by default the collector sidecar on localhost.
    Otlp,
    /// OTLP/HTTP straight to Google's Telemetry API with the runtime service account's token.
    Gcp,
}

/// `telemetry.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default)]
    pub exporter: Exporter,
    /// Base URL of an OTLP/HTTP receiver; `/v1/traces` and `/v1/metrics` are appended.
    #[serde(default = "default_otlp_endpoint")]
    pub otlp_endpoint: String,
    /// Base URL of Google's Telemetry API (the `gcp` exporter).
    #[serde(default = "default_gcp_endpoint")]
    pub gcp_endpoint: String,
    /// Google Cloud project; else `GOOGLE_CLOUD_PROJECT`, else the metadata server on Cloud Run.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Region for `cloud.region`; else the metadata server on Cloud Run.
    #[serde(default)]
    pub region: Option<String>,
    /// `service.name`; default `K_SERVICE`, else `items-service`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Share of new traces that are sampled (0..=1). A caller's sampling decision (traceparent
    /// flags, `X-Cloud-Trace-Context` `o=`) is always followed.
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// How often metrics are exported.
    #[serde(default = "default_metrics_interval")]
    pub metrics_interval_secs: u64,
    /// Longest wait before a batch of spans is sent.
    #[serde(default = "default_batch_delay")]
    pub batch_delay_ms: u64,
    /// Spans buffered before new ones are dropped.
    #[serde(default = "default_queue_size")]
    pub max_queue_size: usize,
    /// Timeout of one export request.
    #[serde(default = "default_export_timeout")]
    pub export_timeout_ms: u64,
    /// Budget for flushing everything at shutdown (Cloud Run kills 10 s after SIGTERM).
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout_ms: u64,
    /// Budget for metadata-server look-ups on Cloud Run (project, region, instance).
    #[serde(default = "default_metadata_timeout")]
    pub metadata_timeout_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            exporter: Exporter::None,
            otlp_endpoint: default_otlp_endpoint(),
            gcp_endpoint: default_gcp_endpoint(),
            project_id: None,
            region: None,
            service_name: None,
            sample_ratio: 1.0,
            metrics_interval_secs: default_metrics_interval(),
            batch_delay_ms: default_batch_delay(),
            max_queue_size: default_queue_size(),
            export_timeout_ms: default_export_timeout(),
            flush_timeout_ms: default_flush_timeout(),
            metadata_timeout_ms: default_metadata_timeout(),
        }
    }
}

fn default_otlp_endpoint() -> String {
    "http://localhost:4318".to_owned()
}
fn default_gcp_endpoint() -> String {
    "https://telemetry.googleapis.com".to_owned()
}
fn one() -> f64 {
    1.0
}
fn default_metrics_interval() -> u64 {
    60
}
fn default_batch_delay() -> u64 {
    1000
}
fn default_queue_size() -> usize {
    8192
}
fn default_export_timeout() -> u64 {
    5000
}
fn default_flush_timeout() -> u64 {
    1500
}
fn default_metadata_timeout() -> u64 {
    500
}
