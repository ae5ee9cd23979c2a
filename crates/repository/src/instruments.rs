//! Spans and metrics of the store, following the database client semantic conventions:
//! `db.system.name`, `db.operation.name`, `db.collection.name`; never statement parameters.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Histogram, ObservableGauge};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

/// One kind of statement: the span name and its attributes.
pub(crate) struct Query {
    name: &'static str,
    operation: Option<&'static str>,
    table: Option<&'static str>,
}

impl Query {
    const fn new(name: &'static str, operation: &'static str, table: &'static str) -> Self {
        Self {
            name,
            operation: Some(operation),
            table: Some(table),
        }
    }
    pub(crate) const ACQUIRE: Query = Query {
        name: "acquire connection",
        operation: None,
        table: None,
    };
    pub(crate) const PING: Query = Query {
        name: "SELECT",
        operation: Some("SELECT"),
        table: None,
    };
    pub(crate) const BEGIN: Query = Query {
        name: "BEGIN",
        operation: Some("BEGIN"),
        table: None,
    };
    pub(crate) const COMMIT: Query = Query {
        name: "COMMIT",
        operation: Some("COMMIT"),
        table: None,
    };
    pub(crate) const SELECT_ITEMS: Query = Query::new("SELECT items", "SELECT", "items");
    pub(crate) const INSERT_ITEMS: Query = Query::new("INSERT items", "INSERT", "items");
    pub(crate) const UPDATE_ITEMS: Query = Query::new("UPDATE items", "UPDATE", "items");
    pub(crate) const DELETE_ITEMS: Query = Query::new("DELETE items", "DELETE", "items");
    pub(crate) const INSERT_KEYS: Query =
        Query::new("INSERT idempotency_keys", "INSERT", "idempotency_keys");
    pub(crate) const SELECT_KEYS: Query =
        Query::new("SELECT idempotency_keys", "SELECT", "idempotency_keys");
    pub(crate) const UPDATE_KEYS: Query =
        Query::new("UPDATE idempotency_keys", "UPDATE", "idempotency_keys");
    pub(crate) const DELETE_KEYS: Query =
        Query::new("DELETE idempotency_keys", "DELETE", "idempotency_keys");

    /// The attributes of a statement, `error.type` after them when it failed: on the stack, no
    /// allocation (this runs for every statement, sampled or not, for the duration histogram).
    fn attributes(&self, failed: bool) -> ([KeyValue; 4], usize) {
        let mut attributes = [
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.system.name", "postgresql"),
        ];
        let mut n = 1;
        if let Some(operation) = self.operation {
            attributes[n] = KeyValue::new("db.operation.name", operation);
            n += 1;
        }
        if let Some(table) = self.table {
            attributes[n] = KeyValue::new("db.collection.name", table);
            n += 1;
        }
        if failed {
            attributes[n] = KeyValue::new("error.type", "db_error");
            n += 1;
        }
        (attributes, n)
    }
}

#[derive(Clone)]
pub(crate) struct Instruments(Arc<Inner>);

struct Inner {
    tracer: BoxedTracer,
    query_duration: Histogram<f64>,
    gauges: std::sync::Mutex<Vec<ObservableGauge<u64>>>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instruments")
    }
}

impl Instruments {
    /// Instruments of the global tracer and meter providers (set by telemetry start-up).
    pub(crate) fn from_global() -> Self {
        let meter = opentelemetry::global::meter("items-repository");
        let query_duration = meter
            .f64_histogram("db.client.operation.duration")
            .with_unit("s")
            .with_description("Duration of database client operations.")
            .with_boundaries(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])
            .build();
        Self(Arc::new(Inner {
            tracer: opentelemetry::global::tracer("items-repository"),
            query_duration,
            gauges: std::sync::Mutex::new(Vec::new()),
        }))
    }

    pub(crate) async fn traced<T, E>(
        &self,
        query: &Query,
        statement: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let tracer = &self.0.tracer;
        let parent = Context::current();
        let span = tracer
            .span_builder(query.name)
            .with_kind(SpanKind::Client)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        let started = Instant::now();
        let result = statement.await;
        let elapsed = started.elapsed().as_secs_f64();
        let span = cx.span();
        let recording = span.is_recording();
        if recording || query.operation.is_some() {
            let (attributes, n) = query.attributes(result.is_err());
            let attributes = &attributes[..n];
            if query.operation.is_some() {
                self.0.query_duration.record(elapsed, attributes);
            }
            if recording {
                span.set_attributes(attributes.iter().cloned());
                if result.is_err() {
                    span.set_status(Status::error("database error"));
                }
            }
        }
        span.end();
        result
    }

    /// Pool gauges summed over `pools` (one per actix worker, see `WorkerStores`).
    pub(crate) fn register_pool_gauges(&self, pools: Vec<Pool>) {
        let meter = opentelemetry::global::meter("items-repository");
        let name = || KeyValue::new("db.client.connection.pool.name", "items");
        let pools: Arc<[Pool]> = pools.into();
        let total = move |pick: fn(&deadpool_postgres::Status) -> usize| -> u64 {
            pools.iter().map(|p| pick(&p.status()) as u64).sum()
        };
        let sum = total.clone();
        let count = meter
            .u64_observable_gauge("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Connections in the pool, by state (idle, used).")
            .with_callback(move |o| {
                o.observe(
                    sum(|s| s.available),
                    &[name(), KeyValue::new("db.client.connection.state", "idle")],
                );
                o.observe(
                    sum(|s| s.size.saturating_sub(s.available)),
                    &[name(), KeyValue::new("db.client.connection.state", "used")],
                );
            })
            .build();
        let sum = total.clone();
        let max = meter
            .u64_observable_gauge("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("The pool's maximum size.")
            .with_callback(move |o| o.observe(sum(|s| s.max_size), &[name()]))
            .build();
        let sum = total;
        let waiting = meter
            .u64_observable_gauge("db.client.connection.pending_requests")
            .with_unit("{request}")
            .with_description("Requests waiting for a connection.")
            .with_callback(move |o| o.observe(sum(|s| s.waiting), &[name()]))
            .build();
        if let Ok(mut gauges) = self.0.gauges.lock() {
            gauges.extend([count, max, waiting]);
        }
    }
}
