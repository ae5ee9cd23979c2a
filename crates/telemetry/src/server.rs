//! What the HTTP middleware needs, free of any web framework: the server span, the request
//! duration histogram and the access-log policy.

use opentelemetry::metrics::Histogram;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt as _, TraceFlags, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer, ShouldSample as _,
};

use crate::panic::CatchesPanics;
use crate::{LogSettings, Telemetry};

/// Bucket bounds (seconds) of `http.server.request.duration`: fine enough between 1 ms and 10 s
/// to read p50/p95/p99 within one bucket's width.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
];

/// Per-process instruments of the HTTP server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpInstruments {
    tracer: SdkTracer,
    /// With no span exporter: the sampler that decides the span's sampled flag (logs show it);
    /// the span itself is never recorded.
    unexported: Option<Sampler>,
    duration: Histogram<f64>,
    access_log: bool,
    probe_sample_ratio: f64,
}

impl HttpInstruments {
    pub fn new(telemetry: &Telemetry, log: &LogSettings) -> Self {
        use opentelemetry::trace::TracerProvider as _;
        let tracer = telemetry.tracer_provider().tracer("items-http");
        let meter = opentelemetry::global::meter("items-http");
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        Self {
            tracer,
            unexported: telemetry.unexported_sampler().cloned(),
            duration,
            access_log: log.access_log,
            probe_sample_ratio: log.health_probe_sample_ratio.clamp(0.0, 1.0),
        }
    }

    /// Starts the server span (named after the method until the route is known) as a child of
    /// the caller's span, and returns the context to run the request in.
    ///
    /// With no span exporter, the span is not recorded, only identified: its trace and span ids
    /// and its sampled flag (the configured sampler's decision, as the SDK would take it) are
    /// what the logs and problem bodies show, and nothing else of it would leave the process.
    /// GET /items/{id}: 58.4k -> 52.0k instructions (`callgrind`, docs/performance.md).
    pub fn start_server_span(&self, method: &'static str, parent: Option<SpanContext>) -> Context {
        let remote = parent
            .as_ref()
            .map(|p| (p.trace_id(), p.trace_flags(), p.is_valid()));
        let parent_cx = match parent {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        if let Some(sampler) = &self.unexported {
            let ids = RandomIdGenerator::default();
            let (trace_id, flags) = match remote {
                Some((trace_id, flags, true)) => (trace_id, flags),
                _ => (ids.new_trace_id(), TraceFlags::default()),
            };
            let sampling = sampler.should_sample(
                Some(&parent_cx),
                trace_id,
                method,
                &SpanKind::Server,
                &[],
                &[],
            );
            let sampled = sampling.decision == SamplingDecision::RecordAndSample;
            let span = SpanContext::new(
                trace_id,
                ids.new_span_id(),
                flags.with_sampled(sampled),
                false,
                sampling.trace_state,
            );
            return parent_cx
                .with_remote_span_context(span)
                .with_value(CatchesPanics);
        }
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent_cx);
        parent_cx.with_span(span).with_value(CatchesPanics)
    }

    /// Records the request duration.
    pub fn record_duration(
        &self,
        seconds: f64,
        method: &'static str,
        route: Option<&str>,
        status: u16,
    ) {
        let status = KeyValue::new("http.response.status_code", i64::from(status));
        let method = KeyValue::new("http.request.method", method);
        match route {
            Some(route) => self.duration.record(
                seconds,
                &[
                    method,
                    KeyValue::new("http.route", route.to_owned()),
                    status,
                ],
            ),
            None => self.duration.record(seconds, &[method, status]),
        }
    }

    /// Whether this request gets an access-log entry.
    pub fn log_access(&self, health_probe: bool, trace: &SpanContext) -> bool {
        if !self.access_log {
            return false;
        }
        if !health_probe {
            return true;
        }
        // Deterministic per trace: the low 32 bits of the random trace id.
        let draw =
            (u128::from_be_bytes(trace.trace_id().to_bytes()) as u32) as f64 / u32::MAX as f64;
        draw < self.probe_sample_ratio
    }
}

/// The current trace id as 32 lowercase hex digits, if a valid span is current.
pub fn current_trace_id() -> Option<String> {
    Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id().to_string())
    })
}
