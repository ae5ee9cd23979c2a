//! The OpenTelemetry SDK's providers: the tracer provider (always: it makes the trace and span
//! ids that logs and problem bodies carry) and, when exporting, the meter provider, with their
//! exporters ([`crate::otlp`] or `opentelemetry-otlp` for spans, `opentelemetry-otlp` for
//! metrics), all sending through one [`ExportClient`]. The SDK's batch processor and periodic
//! reader run on their own threads.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

use crate::export_client::ExportClient;
use crate::otlp::OtlpSpanExporter;
use crate::{
    Error, PlatformIdentity, SamplerKind, ServiceInfo, SpanExporterKind, TelemetrySettings,
};

/// A running telemetry pipeline. Call [`Telemetry::shutdown`] before exiting to flush it.
#[derive(Debug, Clone)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: Option<SdkMeterProvider>,
    flush_timeout: Duration,
    /// With `telemetry.exporter = "none"`: the sampler, for spans that are never recorded.
    unexported: Option<Sampler>,
}

impl Telemetry {
    /// Builds the pipeline for this service on the platform `identity` describes and installs it
    /// as the global tracer and meter providers (the repository's spans and metrics use the
    /// globals). Must run inside Tokio: the exporters send on the current runtime.
    pub fn start(
        settings: &TelemetrySettings,
        service: &ServiceInfo,
        identity: &PlatformIdentity,
    ) -> Result<Self, Error> {
        crate::install_crypto_provider();
        settings.validate()?;
        let resource = resource(settings, service, identity);
        let mut tracer_provider = SdkTracerProvider::builder()
            .with_sampler(sampler(settings))
            .with_resource(resource.clone());
        let mut meter_provider = None;
        let mut unexported = Some(sampler(settings));
        if let (Some(traces_url), Some(metrics_url)) =
            (settings.traces_url(), settings.metrics_url())
        {
            let client = ExportClient::new(settings, identity)?;
            tracer_provider = tracer_provider.with_span_processor(span_processor(
                settings,
                client.clone(),
                traces_url,
            )?);
            meter_provider = Some(meter_provider_for(settings, client, metrics_url, resource)?);
            unexported = None;
        }
        let tracer_provider = tracer_provider.build();
        // With nothing to export, the repository's spans (made by the global tracer) would be
        // recorded only to be dropped: the global tracer stays the no-op one.
        if unexported.is_none() {
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
        }
        if let Some(meter_provider) = &meter_provider {
            opentelemetry::global::set_meter_provider(meter_provider.clone());
        }
        Ok(Self {
            tracer_provider,
            meter_provider,
            flush_timeout: Duration::from_millis(settings.flush_timeout_ms),
            unexported,
        })
    }

    pub(crate) fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// The sampler when no span is exported (`telemetry.exporter = "none"`), else `None`.
    pub(crate) fn unexported_sampler(&self) -> Option<&Sampler> {
        self.unexported.as_ref()
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

/// The batch processor of `telemetry.span_exporter`: our encoder or `opentelemetry-otlp`'s.
fn span_processor(
    settings: &TelemetrySettings,
    client: ExportClient,
    url: String,
) -> Result<BatchSpanProcessor, Error> {
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue_size)
        .with_max_export_batch_size(512)
        .with_scheduled_delay(Duration::from_millis(settings.batch_delay_ms))
        .build();
    Ok(match settings.span_exporter {
        SpanExporterKind::Own => {
            BatchSpanProcessor::builder(OtlpSpanExporter::new(client, url, timeout))
                .with_batch_config(batch)
                .build()
        }
        SpanExporterKind::Library => BatchSpanProcessor::builder(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(timeout)
                .with_http_client(client)
                .build()?,
        )
        .with_batch_config(batch)
        .build(),
    })
}

/// Metrics through `opentelemetry-otlp`, every `telemetry.metrics_interval_secs`.
fn meter_provider_for(
    settings: &TelemetrySettings,
    client: ExportClient,
    url: String,
    resource: Resource,
) -> Result<SdkMeterProvider, Error> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_millis(settings.export_timeout_ms))
        .with_http_client(client)
        .build()?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(settings.metrics_interval_secs.max(1)))
        .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build())
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

/// The resource: the platform identity's attributes, then `telemetry.resource_attributes`
/// (`OTEL_RESOURCE_ATTRIBUTES`, which wins over what was detected), then `service.name`.
fn resource(
    settings: &TelemetrySettings,
    service: &ServiceInfo,
    identity: &PlatformIdentity,
) -> Resource {
    let (name, _) = settings.service_name_and_origin(identity.service.as_deref(), &service.name);
    let mut attributes = vec![KeyValue::new("service.version", service.version.clone())];
    if let Some(project) = &identity.project_id {
        attributes.push(KeyValue::new("gcp.project_id", project.clone()));
        attributes.push(KeyValue::new("cloud.account.id", project.clone()));
    }
    if identity.on_cloud_run() {
        attributes.push(KeyValue::new("cloud.provider", "gcp"));
        attributes.push(KeyValue::new("cloud.platform", "gcp_cloud_run"));
    }
    let optional = [
        ("cloud.region", &identity.region),
        ("faas.name", &identity.service),
        ("faas.version", &identity.revision),
        ("faas.instance", &identity.instance),
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
