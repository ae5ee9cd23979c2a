//! The OpenTelemetry pipeline: an SDK tracer provider (always: it makes the trace and span ids
//! that logs and problem bodies carry) and, when exporting, a meter provider; both send
//! OTLP/HTTP protobuf through [`ExportClient`], a reqwest client driven on the service's Tokio
//! runtime (the SDK's batch processor and periodic reader run on their own threads).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

use crate::{Compression, Exporter, Platform, SamplerKind, TelemetrySettings};

/// Errors while setting up telemetry.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Who we are, for the resource and Error Reporting.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Default `service.name` when neither the settings nor `K_SERVICE` give one.
    pub name: String,
    pub version: String,
}

/// A running telemetry pipeline. Call [`Telemetry::shutdown`] before exiting to flush it.
#[derive(Debug, Clone)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: Option<SdkMeterProvider>,
    flush_timeout: Duration,
    platform: Platform,
}

impl Telemetry {
    /// Detects the platform and builds the pipeline; installs it as the global tracer and meter
    /// providers (the repository's spans and metrics use the globals). Must run inside Tokio.
    pub async fn start(settings: &TelemetrySettings, service: &ServiceInfo) -> Result<Self, Error> {
        let platform = Platform::detect(settings).await;
        Self::start_on(settings, service, platform)
    }

    /// Like [`Telemetry::start`], with the platform given (tests).
    pub fn start_on(
        settings: &TelemetrySettings,
        service: &ServiceInfo,
        platform: Platform,
    ) -> Result<Self, Error> {
        crate::install_crypto_provider();
        settings.validate()?;
        if let Some(project) = &platform.project_id {
            crate::set_project_id(project);
        }
        let resource = resource(settings, service, &platform);
        let mut tracer_provider = SdkTracerProvider::builder()
            .with_sampler(sampler(settings))
            .with_resource(resource.clone());
        let mut meter_provider = None;
        if let (Some(traces_url), Some(metrics_url)) =
            (settings.traces_url(), settings.metrics_url())
        {
            let client = ExportClient::new(settings, &platform)?;
            let timeout = Duration::from_millis(settings.export_timeout_ms);
            let batch = BatchConfigBuilder::default()
                .with_max_queue_size(settings.max_queue_size)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_millis(settings.batch_delay_ms))
                .build();
            let processor = match settings.span_exporter {
                crate::SpanExporterKind::Own => BatchSpanProcessor::builder(
                    crate::otlp::OtlpSpanExporter::new(client.clone(), traces_url, timeout),
                )
                .with_batch_config(batch)
                .build(),
                crate::SpanExporterKind::Library => BatchSpanProcessor::builder(
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(Protocol::HttpBinary)
                        .with_endpoint(traces_url)
                        .with_timeout(timeout)
                        .with_http_client(client.clone())
                        .build()?,
                )
                .with_batch_config(batch)
                .build(),
            };
            tracer_provider = tracer_provider.with_span_processor(processor);
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(metrics_url)
                .with_timeout(timeout)
                .with_http_client(client)
                .build()?;
            let reader = PeriodicReader::builder(metrics)
                .with_interval(Duration::from_secs(settings.metrics_interval_secs.max(1)))
                .build();
            meter_provider = Some(
                SdkMeterProvider::builder()
                    .with_resource(resource)
                    .with_reader(reader)
                    .build(),
            );
        }
        let tracer_provider = tracer_provider.build();
        opentelemetry::global::set_tracer_provider(tracer_provider.clone());
        if let Some(meter_provider) = &meter_provider {
            opentelemetry::global::set_meter_provider(meter_provider.clone());
        }
        Ok(Self {
            tracer_provider,
            meter_provider,
            flush_timeout: Duration::from_millis(settings.flush_timeout_ms),
            platform,
        })
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    pub(crate) fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// Exports everything buffered and stops the exporters, within the flush budget.
    pub async fn shutdown(&self) {
        let this = self.clone();
        let flush = tokio::task::spawn_blocking(move || {
            if let Err(e) = this.tracer_provider.force_flush() {
                tracing::warn!(error = %e, "flushing spans failed");
            }
            if let Some(meter_provider) = &this.meter_provider
                && let Err(e) = meter_provider.force_flush()
            {
                tracing::warn!(error = %e, "flushing metrics failed");
            }
            let _ = this
                .tracer_provider
                .shutdown_with_timeout(this.flush_timeout);
            if let Some(meter_provider) = &this.meter_provider {
                let _ = meter_provider.shutdown();
            }
        });
        if tokio::time::timeout(self.flush_timeout * 2, flush)
            .await
            .is_err()
        {
            tracing::warn!("telemetry flush did not finish in time");
        }
    }
}

/// The sampler of `telemetry.sampler`, ratio samplers at `telemetry.sample_ratio`.
fn sampler(settings: &TelemetrySettings) -> Sampler {
    let ratio = || Sampler::TraceIdRatioBased(settings.sample_ratio);
    match settings.sampler {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::TraceIdRatio => ratio(),
        SamplerKind::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerKind::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerKind::ParentbasedTraceIdRatio => Sampler::ParentBased(Box::new(ratio())),
    }
}

/// The resource: detected platform attributes, then `telemetry.resource_attributes`
/// (`OTEL_RESOURCE_ATTRIBUTES`, which wins over what was detected), then `service.name`.
fn resource(settings: &TelemetrySettings, service: &ServiceInfo, platform: &Platform) -> Resource {
    let (name, _) = settings.service_name_and_origin(platform.service.as_deref(), &service.name);
    let mut attributes = vec![KeyValue::new("service.version", service.version.clone())];
    if let Some(project) = &platform.project_id {
        attributes.push(KeyValue::new("gcp.project_id", project.clone()));
        attributes.push(KeyValue::new("cloud.account.id", project.clone()));
    }
    if platform.on_cloud_run() {
        attributes.push(KeyValue::new("cloud.provider", "gcp"));
        attributes.push(KeyValue::new("cloud.platform", "gcp_cloud_run"));
    }
    let optional = [
        ("cloud.region", &platform.region),
        ("faas.name", &platform.service),
        ("faas.version", &platform.revision),
        ("faas.instance", &platform.instance),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, value.clone()));
        }
    }
    // Validated with the settings; the service name was taken from it above.
    let configured =
        crate::env::parse_key_values(&settings.resource_attributes).unwrap_or_default();
    attributes.extend(
        configured
            .into_iter()
            .filter(|(key, _)| key != "service.name")
            .map(|(key, value)| KeyValue::new(key, value)),
    );
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_service_name(name)
        .build()
}

/// The exporters' HTTP client: reqwest on the service's runtime, with Google credentials for the
/// `gcp` exporter.
#[derive(Debug, Clone)]
pub(crate) struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    google: Option<Arc<GoogleAuth>>,
    /// `telemetry.otlp_headers`: the only extra headers sent (see [`ExportClient::send`]).
    headers: Arc<http::HeaderMap>,
    compression: Compression,
}

#[derive(Debug)]
struct GoogleAuth {
    credentials: google_cloud_auth::credentials::Credentials,
    user_project: http::HeaderValue,
}

impl ExportClient {
    fn new(settings: &TelemetrySettings, platform: &Platform) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "telemetry must be started inside the Tokio runtime")?;
        let google = if settings.exporter == Exporter::Gcp {
            let project = platform.project_id.as_deref().ok_or(
                "telemetry.exporter = \"gcp\" needs a project: set telemetry.project_id or \
                 GOOGLE_CLOUD_PROJECT (on Cloud Run the metadata server gives it)",
            )?;
            let credentials = google_cloud_auth::credentials::Builder::default()
                .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
                .build()
                .map_err(|e| format!("Google credentials for the gcp exporter: {e}"))?;
            Some(Arc::new(GoogleAuth {
                credentials,
                user_project: http::HeaderValue::from_str(project)?,
            }))
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.export_timeout_ms))
            .build()?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in crate::env::parse_key_values(&settings.otlp_headers.0)? {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("telemetry.otlp_headers: {name:?}: {e}"))?;
            let value = http::HeaderValue::from_str(&value)
                .map_err(|e| format!("telemetry.otlp_headers: value of {name}: {e}"))?;
            headers.append(name, value);
        }
        Ok(Self {
            http,
            runtime,
            google,
            headers: Arc::new(headers),
            compression: settings.otlp_compression,
        })
    }

    /// Sends one export request (spans or metrics) as the settings say. Its headers are the
    /// body's `Content-Type`/`Content-Encoding` plus `telemetry.otlp_headers`, nothing else:
    /// `opentelemetry-otlp` also adds `OTEL_EXPORTER_OTLP_*HEADERS` from the environment by
    /// itself, which our settings already resolved (an `APP__…` value winning). The body is
    /// gzipped here when `telemetry.otlp_compression = "gzip"`; for the same reason as the
    /// headers, a body the library gzipped on its own (`OTEL_EXPORTER_OTLP_COMPRESSION`) is
    /// inflated again when the settings say `none`.
    async fn send(self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, mut body) = request.into_parts();
        let mut headers = http::HeaderMap::new();
        for name in [http::header::CONTENT_TYPE, http::header::CONTENT_ENCODING] {
            if let Some(value) = parts.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        if self.compression == Compression::None
            && headers
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
        {
            let mut inflated = Vec::with_capacity(body.len() * 4);
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&body[..]),
                &mut inflated,
            )?;
            body = Bytes::from(inflated);
            headers.remove(http::header::CONTENT_ENCODING);
        }
        if self.compression == Compression::Gzip
            && !headers.contains_key(http::header::CONTENT_ENCODING)
        {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3 + 64),
                flate2::Compression::default(),
            );
            std::io::Write::write_all(&mut encoder, &body)?;
            body = Bytes::from(encoder.finish()?);
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(google) = &self.google {
            let auth = google
                .credentials
                .headers(http::Extensions::new())
                .await
                .map_err(|e| format!("Google credentials: {e}"))?;
            if let google_cloud_auth::credentials::CacheableResource::New { data, .. } = auth {
                headers.extend(data);
            }
            headers.insert("x-goog-user-project", google.user_project.clone());
        }
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let mut builder = Response::builder().status(response.status());
        if let Some(h) = builder.headers_mut() {
            *h = response.headers().clone();
        }
        let body = response.bytes().await?;
        Ok(builder.body(body)?)
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The SDK calls this from its own thread; the request itself runs on the runtime.
        self.runtime.spawn(self.clone().send(request)).await?
    }
}
