//! The `log` and `telemetry` settings sections. Their defaults are written once, in the
//! service's `config/base.toml`: a key it lacks is an error, not a value made up here. Only
//! optional keys (unset means "none") may be absent.

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line in Cloud Logging's structured-logging shape.
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// `log.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `items_http=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// One access-log entry (with `httpRequest`) per request.
    pub access_log: bool,
    /// Share of health-probe requests (`/health/live`, `/health/ready`) that get an access-log entry:
    /// 0 silences them, 1 logs every one.
    pub health_probe_sample_ratio: f64,
}

/// Where traces and metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exporter {
    /// Nothing is exported; trace ids are still made for log correlation and problem bodies.
    None,
    /// OTLP/HTTP (protobuf) to `otlp_endpoint`, by default the collector sidecar on localhost.
    Otlp,
    /// OTLP/HTTP straight to Google's Telemetry API with the runtime service account's token.
    Gcp,
}

/// `telemetry.sampler`: the specification's built-in samplers (`OTEL_TRACES_SAMPLER`). The ratio
/// samplers use `telemetry.sample_ratio` (`OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    /// A caller's decision is followed, new traces are sampled at `sample_ratio`.
    #[serde(rename = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

/// `telemetry.otlp_compression` (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

/// `telemetry.otlp_headers` (`OTEL_EXPORTER_OTLP_HEADERS`): `key=value,…`, values
/// percent-encoded. They may hold credentials: `Debug` shows the header names only.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct OtlpHeaders(pub String);

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match crate::env::parse_key_values(&self.0) {
            Ok(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(k, _)| (k, "[redacted]")))
                .finish(),
            Err(_) => f.write_str("[malformed]"),
        }
    }
}

/// Which span exporter encodes OTLP (`telemetry.span_exporter`; for measuring one against the
/// other with `cargo xtask bench --telemetry-overhead-only --compare-span-exporters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanExporterKind {
    /// Our encoder (`otlp`), straight from the SDK's span data.
    Own,
    /// `opentelemetry-otlp`'s span exporter.
    Library,
}

/// `telemetry.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub exporter: Exporter,
    /// Base URL of an OTLP/HTTP receiver; `/v1/traces` and `/v1/metrics` are appended
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: String,
    /// Full URL for spans, used as is; wins over `otlp_endpoint`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    #[serde(default)]
    pub otlp_traces_endpoint: Option<String>,
    /// Full URL for metrics, used as is; wins over `otlp_endpoint`
    /// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    #[serde(default)]
    pub otlp_metrics_endpoint: Option<String>,
    /// Extra headers on every export request (`OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(default)]
    pub otlp_headers: OtlpHeaders,
    /// `gzip` or `none` (`OTEL_EXPORTER_OTLP_COMPRESSION`).
    pub otlp_compression: Compression,
    /// Extra resource attributes, `key=value,…` percent-encoded (`OTEL_RESOURCE_ATTRIBUTES`);
    /// its `service.name` counts only when `service_name` is unset.
    #[serde(default)]
    pub resource_attributes: String,
    /// Base URL of Google's Telemetry API (the `gcp` exporter).
    pub gcp_endpoint: String,
    /// Google Cloud project; else `GOOGLE_CLOUD_PROJECT`, else the metadata server on Cloud Run.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Region for `cloud.region`; else the metadata server on Cloud Run.
    #[serde(default)]
    pub region: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME`); default: `service.name` of `resource_attributes`,
    /// else `K_SERVICE`, else `items-service`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The sampler (`OTEL_TRACES_SAMPLER`); the parent-based ones follow a caller's decision
    /// (traceparent flags, `X-Cloud-Trace-Context` `o=`).
    pub sampler: SamplerKind,
    /// Share of new traces that the ratio samplers sample (0..=1; `OTEL_TRACES_SAMPLER_ARG`).
    pub sample_ratio: f64,
    /// How often metrics are exported.
    pub metrics_interval_secs: u64,
    /// Longest wait before a batch of spans is sent.
    pub batch_delay_ms: u64,
    /// Spans buffered before new ones are dropped.
    pub max_queue_size: usize,
    /// Timeout of one export request.
    pub export_timeout_ms: u64,
    /// Budget for flushing everything at shutdown (Cloud Run kills 10 s after SIGTERM).
    pub flush_timeout_ms: u64,
    /// Budget for metadata-server look-ups on Cloud Run (project, region, instance).
    pub metadata_timeout_ms: u64,
    pub span_exporter: SpanExporterKind,
}

impl TelemetrySettings {
    /// Checks the values serde cannot; each error names its key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "telemetry.sample_ratio must be between 0 and 1, got {}",
                self.sample_ratio
            ));
        }
        crate::env::parse_key_values(&self.resource_attributes)
            .map_err(|e| format!("telemetry.resource_attributes: {e}"))?;
        crate::env::parse_key_values(&self.otlp_headers.0)
            .map_err(|e| format!("telemetry.otlp_headers: {e}"))?;
        let urls = [
            ("telemetry.otlp_endpoint", Some(&self.otlp_endpoint)),
            (
                "telemetry.otlp_traces_endpoint",
                self.otlp_traces_endpoint.as_ref(),
            ),
            (
                "telemetry.otlp_metrics_endpoint",
                self.otlp_metrics_endpoint.as_ref(),
            ),
            ("telemetry.gcp_endpoint", Some(&self.gcp_endpoint)),
        ];
        for (key, url) in urls.into_iter().filter_map(|(k, u)| Some((k, u?))) {
            crate::env::check_url(url).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    }

    /// Where spans go: `None` when nothing is exported.
    pub fn traces_url(&self) -> Option<String> {
        self.signal_url(self.otlp_traces_endpoint.as_ref(), "v1/traces")
    }

    /// Where metrics go: `None` when nothing is exported.
    pub fn metrics_url(&self) -> Option<String> {
        self.signal_url(self.otlp_metrics_endpoint.as_ref(), "v1/metrics")
    }

    fn signal_url(&self, own: Option<&String>, path: &str) -> Option<String> {
        match self.exporter {
            Exporter::None => None,
            Exporter::Otlp => Some(
                own.cloned()
                    .unwrap_or_else(|| crate::env::signal_url(&self.otlp_endpoint, path)),
            ),
            Exporter::Gcp => Some(crate::env::signal_url(&self.gcp_endpoint, path)),
        }
    }

    /// The `service.name` the resource gets, and where it came from: this setting, else
    /// `service.name` in `resource_attributes`, else `K_SERVICE` (`platform_service`), else
    /// `default`.
    pub fn service_name_and_origin(
        &self,
        platform_service: Option<&str>,
        default: &str,
    ) -> (String, &'static str) {
        if let Some(name) = self.service_name.as_deref().filter(|n| !n.is_empty()) {
            return (name.to_owned(), "telemetry.service_name");
        }
        let from_attributes = crate::env::parse_key_values(&self.resource_attributes)
            .ok()
            .and_then(|pairs| {
                pairs
                    .into_iter()
                    .find(|(k, v)| k == "service.name" && !v.is_empty())
            });
        if let Some((_, name)) = from_attributes {
            return (name, "telemetry.resource_attributes");
        }
        match platform_service.filter(|s| !s.is_empty()) {
            Some(service) => (service.to_owned(), "K_SERVICE"),
            None => (default.to_owned(), "built-in default"),
        }
    }
}
