//! Google's wire conventions shared by the APIs: error bodies, codes, timestamps, enum values.

use actix_web::HttpResponse;
use serde_json::{Value, json};

/// Google's JSON error: `{"error":{"code":404,"message":"…","status":"NOT_FOUND"}}`
/// (AIP-193 "Errors", HTTP mapping of `google.rpc.Status`).
pub(crate) fn error(http: u16, status: &str, message: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(http)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code)
        .content_type("application/json")
        .json(json!({"error": {"code": http, "message": message, "status": status}}))
}

/// Google's answer for a missing resource.
pub(crate) fn not_found(name: &str) -> HttpResponse {
    error(
        404,
        "NOT_FOUND",
        &format!("Resource '{name}' was not found"),
    )
}

/// The resource, or Google's answer for a missing one.
pub(crate) fn found(resource: Option<&Value>, name: &str) -> HttpResponse {
    match resource {
        Some(resource) => HttpResponse::Ok().json(resource),
        None => not_found(name),
    }
}

/// The name of a `google.rpc.Code` (google/rpc/code.proto).
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        3 => "INVALID_ARGUMENT",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// A fixed-date RFC 3339 timestamp `tick` seconds after 2024-01-01T00:00:00Z (ticks order
/// resources by creation without a clock).
pub(crate) fn timestamp(tick: u64) -> String {
    format!(
        "2024-01-01T{:02}:{:02}:{:02}Z",
        tick / 3600,
        (tick / 60) % 60,
        tick % 60
    )
}

/// Whether an enum value is `number` or `name`: Google's Rust clients send enums as numbers
/// (`$alt=json;enum-encoding=int`), other clients as names; answers use names.
pub(crate) fn is_enum(value: &Value, number: i64, name: &str) -> bool {
    value.as_i64() == Some(number) || value.as_str() == Some(name)
}

pub(crate) const LATEST: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";
pub(crate) const REVISION: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION";
