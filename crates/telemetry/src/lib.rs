//! Telemetry for the items service, with no web framework and no database in sight:
//!
//! - [`logging`]: Cloud Logging structured JSON on stdout (or a readable format), Error
//!   Reporting events for ERROR lines and panics ([`panic`]).
//! - [`propagation`]: incoming trace context (`traceparent`, then `X-Cloud-Trace-Context`).
//! - [`PlatformIdentity`] and [`ServiceInfo`]: who and where the service is, read once at
//!   start-up ([`PlatformIdentity::detect`]) and passed to [`init`] and [`Telemetry::start`].
//! - [`Telemetry`] (`providers`): the OpenTelemetry tracer and meter providers and their
//!   exporters (`none`, `otlp` to a collector, `gcp` straight to Google's Telemetry API);
//!   flushed by [`Telemetry::shutdown`]. `otlp` is our span exporter (protobuf encoder and
//!   sender), `export_client` the HTTP client every export goes through.
//! - [`HttpInstruments`]: what the HTTP middleware uses per request.
//! - [`env`]: the OpenTelemetry specification's `OTEL_*` variables and the settings they feed.

pub mod env;
mod export_client;
mod identity;
pub mod logging;
mod otlp;
pub mod panic;
pub mod propagation;
mod providers;
mod server;
mod settings;
pub mod writer;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use identity::{PlatformIdentity, ServiceInfo};
pub use logging::{Latency, ServiceContext};
pub use providers::Telemetry;
pub use server::{DURATION_BUCKETS, HttpInstruments, current_trace_id};
pub use settings::{
    Compression, Exporter, LogFormat, LogSettings, OtlpHeaders, SamplerKind, SpanExporterKind,
    TelemetrySettings,
};
pub use writer::{BatchGuard, BatchWriter};

/// Errors while setting up telemetry.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Makes ring the process's rustls crypto provider. reqwest and google-cloud-auth are built
/// without a provider of their own (no aws-lc in the build), so this must run before the first
/// HTTP client is built; [`init`] and [`Telemetry::start`] call it. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the global log subscriber (stdout, written by a background thread in batches, see
/// [`writer`]) and the panic hook. Call once, at start-up, and keep the guard until the process
/// ends: dropping it writes out the lines still buffered.
pub fn init(
    log: &LogSettings,
    identity: &PlatformIdentity,
    service: &ServiceInfo,
) -> Result<BatchGuard, Error> {
    init_batched(log, identity, service, std::io::stdout())
}

/// Like [`init`], writing the batches to `out` instead of stdout (tests capture the output).
pub fn init_batched<W: std::io::Write + Send + 'static>(
    log: &LogSettings,
    identity: &PlatformIdentity,
    service: &ServiceInfo,
    out: W,
) -> Result<BatchGuard, Error> {
    let (writer, guard) = BatchWriter::new(out)?;
    init_with_writer(log, identity, service, writer)?;
    Ok(guard)
}

/// Like [`init`], writing to `make_writer` (tests capture the output).
pub fn init_with_writer<W>(
    log: &LogSettings,
    identity: &PlatformIdentity,
    service: &ServiceInfo,
    make_writer: W,
) -> Result<(), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install_crypto_provider();
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&log.level))?;
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        LogFormat::Json => {
            let context = ServiceContext::new(identity, service);
            let project = identity.project_id.as_deref();
            registry
                .with(logging::CloudLoggingLayer::new(
                    make_writer,
                    &context,
                    project,
                ))
                .try_init()?;
        }
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(make_writer))
            .try_init()?,
    }
    panic::install_hook();
    Ok(())
}
