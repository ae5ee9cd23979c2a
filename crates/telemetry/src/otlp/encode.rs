//! The OTLP protobuf encoding of spans, written straight from the SDK's `SpanData`.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{encode_varint, encoded_len_varint};

/// The fields of a `Resource` message, and the resource's schema URL.
pub(super) fn encode_resource(resource: &Resource) -> (Vec<u8>, String) {
    let mut encoded = Vec::new();
    for (key, value) in resource.iter() {
        message(&mut encoded, 1, |out| key_value(out, key, value));
    }
    let schema_url = resource.schema_url().unwrap_or_default().to_owned();
    (encoded, schema_url)
}

// Protobuf wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource, scope_spans, schema_url }] }`
/// with one `ScopeSpans` per instrumentation scope, in order of first appearance.
pub(super) fn encode_request(
    resource: &[u8],
    schema_url: &str,
    spans: &[SpanData],
    out: &mut Vec<u8>,
) {
    message(out, 1, |out| {
        message(out, 1, |out| out.extend_from_slice(resource));
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        for span in spans {
            if !scopes.contains(&&span.instrumentation_scope) {
                scopes.push(&span.instrumentation_scope);
            }
        }
        for scope in scopes {
            message(out, 2, |out| {
                message(out, 1, |out| instrumentation_scope(out, scope));
                for span in spans.iter().filter(|s| s.instrumentation_scope == *scope) {
                    message(out, 2, |out| encode_span(out, span));
                }
                string(out, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(out, 3, schema_url);
    });
}

fn instrumentation_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        message(out, 3, |out| key_value(out, &kv.key, &kv.value));
    }
}

/// One `Span` message (opentelemetry/proto/trace/v1/trace.proto).
fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    let sc = &span.span_context;
    bytes(out, 1, &sc.trace_id().to_bytes());
    bytes(out, 2, &sc.span_id().to_bytes());
    string(out, 3, &sc.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    varint(out, 6, kind);
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    attributes(out, 9, &span.attributes);
    varint(out, 10, span.dropped_attributes_count.into());
    for event in span.events.iter() {
        message(out, 11, |out| {
            fixed64(out, 1, nanos(event.timestamp));
            string(out, 2, &event.name);
            attributes(out, 3, &event.attributes);
            varint(out, 4, event.dropped_attributes_count.into());
        });
    }
    varint(out, 12, span.events.dropped_count.into());
    for link in span.links.iter() {
        message(out, 13, |out| {
            let sc = &link.span_context;
            bytes(out, 1, &sc.trace_id().to_bytes());
            bytes(out, 2, &sc.span_id().to_bytes());
            string(out, 3, &sc.trace_state().header());
            attributes(out, 4, &link.attributes);
            varint(out, 5, link.dropped_attributes_count.into());
            fixed32(out, 6, span_flags(sc.is_remote(), sc.trace_flags().to_u8()));
        });
    }
    varint(out, 14, span.links.dropped_count.into());
    message(out, 15, |out| {
        let (code, description) = match &span.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        string(out, 2, description);
        varint(out, 3, code);
    });
    fixed32(
        out,
        16,
        span_flags(span.parent_span_is_remote, sc.trace_flags().to_u8()),
    );
}

/// W3C trace flags plus OTLP's "is the parent remote" bits (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE`
/// and `SPAN_FLAGS_CONTEXT_IS_REMOTE`).
fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | 0x100 | if remote { 0x200 } else { 0 }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(out: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        message(out, field, |out| key_value(out, &kv.key, &kv.value));
    }
}

/// `KeyValue { key = 1, value = 2 (AnyValue) }`.
fn key_value(out: &mut Vec<u8>, key: &Key, value: &Value) {
    string(out, 1, key.as_str());
    message(out, 2, |out| any_value(out, value));
}

/// `AnyValue { string_value = 1, bool_value = 2, int_value = 3, double_value = 4,
/// array_value = 5 (ArrayValue { values = 1 }) }`.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => string_always(out, 1, s.as_str()),
        // `oneof` members are written even when zero.
        Value::Bool(b) => {
            key(out, 2, VARINT);
            encode_varint(u64::from(*b), out);
        }
        Value::I64(n) => {
            key(out, 3, VARINT);
            encode_varint(*n as u64, out);
        }
        Value::F64(n) => {
            key(out, 4, I64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Array(array) => message(out, 5, |out| {
            // `ArrayValue { values = 1 (AnyValue) }`
            let item = |out: &mut Vec<u8>, v: &Value| message(out, 1, |out| any_value(out, v));
            match array {
                Array::Bool(vs) => vs.iter().for_each(|v| item(out, &Value::Bool(*v))),
                Array::I64(vs) => vs.iter().for_each(|v| item(out, &Value::I64(*v))),
                Array::F64(vs) => vs.iter().for_each(|v| item(out, &Value::F64(*v))),
                Array::String(vs) => vs
                    .iter()
                    .for_each(|v| message(out, 1, |out| string_always(out, 1, v.as_str()))),
                other => message(out, 1, |out| string_always(out, 1, &other.to_string())),
            }
        }),
        other => string_always(out, 1, &other.as_str()),
    }
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    encode_varint(u64::from((field << 3) | wire_type), out);
}

/// A scalar field; zero is the default and is left out, as protobuf encoders do.
fn varint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, VARINT);
        encode_varint(value, out);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, I64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        key(out, field, I32);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        string_always_bytes(out, field, value);
    }
}

fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

/// A string inside a `oneof`: present even when empty.
fn string_always(out: &mut Vec<u8>, field: u32, value: &str) {
    string_always_bytes(out, field, value.as_bytes());
}

fn string_always_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, LEN);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A nested message: written in place, then its length is slid in before it.
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let start = out.len();
    body(out);
    let len = (out.len() - start) as u64;
    let mut prefix = [0u8; 10];
    let n = encoded_len_varint(len);
    encode_varint(len, &mut &mut prefix[..n]);
    out.splice(start..start, prefix[..n].iter().copied());
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::{encode_request, encode_resource};

    fn context(trace: u128, span: u64, sampled: bool, remote: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            remote,
            TraceState::from_key_value([("vendor", "v1")]).unwrap(),
        )
    }

    fn spans() -> Vec<SpanData> {
        let http = InstrumentationScope::builder("items-http").build();
        let repo = InstrumentationScope::builder("items-repository")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", 7)])
            .build();
        let t0 = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let server = SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x1111,
                true,
                false,
            ),
            parent_span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("GET /items/{id}"),
            start_time: t0,
            end_time: t0 + Duration::from_micros(1234),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 503i64),
                KeyValue::new("http.route", String::from("/items/{id}")),
                KeyValue::new("negative", -42i64),
                KeyValue::new("ratio", 0.25),
                KeyValue::new("flag", false),
                KeyValue::new("empty", ""),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec!["a".into(), "ü".into()])),
                ),
                KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1, 0]))),
            ],
            dropped_attributes_count: 2,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error("Service Unavailable"),
            instrumentation_scope: http,
        };
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "retry",
            t0 + Duration::from_micros(10),
            vec![KeyValue::new("attempt", 2i64)],
            1,
        ));
        events.dropped_count = 3;
        let mut links = SpanLinks::default();
        links.links.push(Link::new(
            context(7, 8, false, true),
            vec![KeyValue::new("why", "batch")],
            0,
        ));
        let query = SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x2222,
                true,
                false,
            ),
            parent_span_id: SpanId::from(0x1111),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned("SELECT items".to_owned()),
            start_time: t0 + Duration::from_micros(5),
            end_time: t0 + Duration::from_micros(900),
            attributes: vec![KeyValue::new("db.system.name", "postgresql")],
            dropped_attributes_count: 0,
            events,
            links,
            status: Status::Ok,
            instrumentation_scope: repo,
        };
        let root = SpanData {
            span_context: context(5, 6, false, false),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("root"),
            start_time: t0,
            end_time: t0,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("items-http").build(),
        };
        vec![server, query, root]
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("items")
            .with_attributes([
                KeyValue::new("gcp.project_id", "p"),
                KeyValue::new("pid", 12i64),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.30.0")
            .build()
    }

    /// What `opentelemetry-otlp` would send for the same spans.
    fn reference(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    fn ours(resource: &Resource, spans: &[SpanData]) -> ExportTraceServiceRequest {
        let (encoded, schema_url) = encode_resource(resource);
        let mut body = Vec::new();
        encode_request(&encoded, &schema_url, spans, &mut body);
        ExportTraceServiceRequest::decode(&body[..]).expect("valid protobuf")
    }

    /// Resource attributes come out of a hash map: their order means nothing.
    fn sorted(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        for rs in &mut request.resource_spans {
            if let Some(resource) = &mut rs.resource {
                resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        request
    }

    #[test]
    fn encodes_what_the_reference_conversion_encodes() {
        let resource = resource();
        let ours = sorted(ours(&resource, &spans()));
        let want = sorted(reference(&resource, spans()));
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 2, "one per scope");
        assert_eq!(ours, want);
    }

    #[test]
    fn empty_strings_in_attribute_values_survive() {
        let resource = resource();
        let ours = ours(&resource, &spans());
        let server = &ours.resource_spans[0].scope_spans[0].spans[0];
        let empty = server
            .attributes
            .iter()
            .find(|kv| kv.key == "empty")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone());
        assert_eq!(empty, Some(any_value::Value::StringValue(String::new())));
    }
}
