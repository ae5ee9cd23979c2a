//! The OTLP the server exports, as an in-process OTLP/HTTP receiver decodes it.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::support::receiver::{Receiver, attr, header, hex};
use crate::support::{
    USER_AGENT, client, create_at, get_in_trace, platform, spawn_traced, traced_settings,
};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_resource_reach_an_otlp_receiver() {
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint.clone();
    let settings = traced_settings(move |s| {
        s.telemetry.exporter = items_telemetry::Exporter::Otlp;
        s.telemetry.otlp_endpoint = endpoint;
        s.telemetry.batch_delay_ms = 100;
        s.telemetry.metrics_interval_secs = 1;
    })
    .await;
    let base = spawn_traced(&settings, platform()).await;
    let created = create_at(&client(), &base, "exported").await;
    let id = created["id"].as_i64().unwrap();
    let response = client()
        .get(format!("{base}/items/{id}"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The server span and its database children.
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |r| {
                r.spans()
                    .iter()
                    .filter(|(_, s)| hex(&s.trace_id) == TRACE)
                    .count()
                    >= 3
            })
            .await,
        "spans of the traced request: {:#?}",
        receiver.spans()
    );
    let spans = receiver.spans();
    let traced: Vec<_> = spans
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == TRACE)
        .collect();
    let (resource, server) = traced
        .iter()
        .find(|(_, s)| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(server.name, "GET /items/{id}");
    assert_eq!(hex(&server.parent_span_id), PARENT);
    let a = &server.attributes;
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(a, "http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(a, "url.path"), Some(format!("/items/{id}")));
    assert_eq!(attr(a, "url.scheme").as_deref(), Some("http"));
    assert_eq!(attr(a, "user_agent.original").as_deref(), Some(USER_AGENT));

    let children: Vec<_> = traced
        .iter()
        .filter(|(_, s)| s.parent_span_id == server.span_id)
        .map(|(_, s)| s)
        .collect();
    let acquire = children
        .iter()
        .find(|s| s.name == "acquire connection")
        .expect("a pool acquisition span");
    assert_eq!(
        attr(&acquire.attributes, "db.system.name").as_deref(),
        Some("postgresql")
    );
    let query = children
        .iter()
        .find(|s| s.name == "SELECT items")
        .expect("a query span");
    assert_eq!(query.kind, SpanKind::Client as i32);
    let q = &query.attributes;
    assert_eq!(attr(q, "db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(attr(q, "db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(attr(q, "db.collection.name").as_deref(), Some("items"));
    // Never parameter values.
    for span in &children {
        for kv in &span.attributes {
            let value = attr(std::slice::from_ref(kv), &kv.key).unwrap_or_default();
            assert_ne!(value, id.to_string(), "{} leaks a parameter", kv.key);
        }
    }

    // Resource attributes.
    let r = &resource.attributes;
    for (key, value) in [
        ("service.name", "items"),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("gcp.project_id", "test-project"),
        ("cloud.provider", "gcp"),
        ("cloud.platform", "gcp_cloud_run"),
        ("cloud.region", "europe-west1"),
        ("faas.name", "items"),
        ("faas.version", "items-00042-abc"),
        ("faas.instance", "instance-7"),
    ] {
        assert_eq!(attr(r, key).as_deref(), Some(value), "resource {key}");
    }

    // Metrics: names, units, attributes.
    let wanted = [
        ("http.server.request.duration", "s"),
        ("db.client.operation.duration", "s"),
        ("db.client.connection.count", "{connection}"),
        ("db.client.connection.max", "{connection}"),
        ("db.client.connection.pending_requests", "{request}"),
    ];
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |r| {
                let metrics = r.metrics();
                wanted
                    .iter()
                    .all(|(name, _)| metrics.iter().any(|(_, m)| m.name == *name))
            })
            .await,
        "metrics: {:?}",
        receiver
            .metrics()
            .iter()
            .map(|(_, m)| &m.name)
            .collect::<Vec<_>>()
    );
    let metrics = receiver.metrics();
    for (name, unit) in wanted {
        let (resource, metric) = metrics.iter().rev().find(|(_, m)| m.name == name).unwrap();
        assert_eq!(metric.unit, unit, "{name}");
        assert_eq!(
            attr(&resource.attributes, "service.name").as_deref(),
            Some("items")
        );
    }
    let (_, duration) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "http.server.request.duration")
        .unwrap();
    let Some(Data::Histogram(histogram)) = &duration.data else {
        panic!("http.server.request.duration is a histogram: {duration:?}");
    };
    let point = histogram
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "http.route").as_deref() == Some("/items/{id}"))
        .expect("a data point for /items/{id}");
    assert_eq!(
        attr(&point.attributes, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr(&point.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(point.explicit_bounds, items_telemetry::DURATION_BUCKETS);
    assert_eq!(point.explicit_bounds.first(), Some(&0.001));
    assert_eq!(point.explicit_bounds.last(), Some(&10.0));
    let (_, count) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "db.client.connection.count")
        .unwrap();
    let Some(Data::Gauge(gauge)) = &count.data else {
        panic!("db.client.connection.count is a gauge: {count:?}");
    };
    let states: Vec<_> = gauge
        .data_points
        .iter()
        .filter_map(|p| attr(&p.attributes, "db.client.connection.state"))
        .collect();
    assert!(states.contains(&"idle".to_owned()) && states.contains(&"used".to_owned()));
    let (_, query) = metrics
        .iter()
        .rev()
        .find(|(_, m)| m.name == "db.client.operation.duration")
        .unwrap();
    let Some(Data::Histogram(query)) = &query.data else {
        panic!("db.client.operation.duration is a histogram");
    };
    assert!(query.data_points.iter().any(|p| {
        attr(&p.attributes, "db.operation.name").as_deref() == Some("SELECT")
            && attr(&p.attributes, "db.collection.name").as_deref() == Some("items")
            && attr(&p.attributes, "db.system.name").as_deref() == Some("postgresql")
    }));
}

/// What `OTEL_EXPORTER_OTLP_HEADERS`/`_COMPRESSION` configure reaches the receiver, and a refused
/// export is retried: after the `Retry-After` of a 503, with backoff after a 429 and a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_carry_headers_are_gzipped_and_retried_after_429_502_503() {
    let receiver = Receiver::start().await;
    receiver.refuse_traces(&[(503, Some(1)), (429, None), (502, None)]);
    let endpoint = receiver.endpoint.clone();
    let settings = traced_settings(move |s| {
        s.telemetry.exporter = items_telemetry::Exporter::Otlp;
        s.telemetry.otlp_endpoint = endpoint;
        s.telemetry.otlp_headers =
            items_telemetry::OtlpHeaders("x-api-key=k%2C1, x-tenant=t".into());
        s.telemetry.otlp_compression = items_telemetry::Compression::Gzip;
        s.telemetry.batch_delay_ms = 100;
        s.telemetry.metrics_interval_secs = 1;
    })
    .await;
    let base = spawn_traced(&settings, platform()).await;
    let trace = "1bf92f3577b34da6a3ce929d0e0e4799";
    let response = get_in_trace(&format!("{base}/items/1"), trace, PARENT).await;
    assert_eq!(response.status(), 404);
    assert!(
        receiver
            .wait_for(Duration::from_secs(10), |r| {
                r.spans().iter().any(|(_, s)| hex(&s.trace_id) == trace)
            })
            .await,
        "the spans arrive after three refusals"
    );
    let arrivals = receiver.trace_arrivals();
    assert!(arrivals.len() >= 4, "{} trace requests", arrivals.len());
    let waited = arrivals[1] - arrivals[0];
    assert!(
        waited >= Duration::from_millis(900),
        "the retry after a 503 with Retry-After: 1 came {waited:?} later"
    );
    assert!(
        receiver
            .wait_for(Duration::from_secs(5), |r| !r.metrics().is_empty())
            .await,
        "metrics arrive too"
    );
    let headers = receiver.headers();
    for h in &headers {
        assert_eq!(header(h, "x-api-key"), Some("k,1"), "{h:?}");
        assert_eq!(header(h, "x-tenant"), Some("t"), "{h:?}");
        assert_eq!(header(h, "content-encoding"), Some("gzip"), "{h:?}");
        assert_eq!(
            header(h, "content-type"),
            Some("application/x-protobuf"),
            "{h:?}"
        );
    }
}
