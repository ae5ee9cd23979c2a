//! API Gateway's request limits ("Quotas and limits"). The statuses and messages are [not
//! confirmed]: ESPv2 itself sets no body limit; these are the standard HTTP statuses in ESPv2's
//! shape.

use actix_web::{HttpRequest, web};
use futures_util::StreamExt as _;

use super::reply::Refusal;
use super::request::header;

/// API Gateway's request size limit ("Quotas and limits").
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// API Gateway's request header size limit ("Quotas and limits").
pub const MAX_HEADER_BYTES: usize = 60 * 1024;

/// Refuses headers over the limit, header names with an underscore and a declared body over the
/// limit, before routing.
pub(super) fn check_headers(req: &HttpRequest) -> Result<(), Refusal> {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Refusal::new(
            "request_headers_too_large",
            431,
            "Request Header Fields Too Large",
        ));
    }
    // ESPv2's default `headers_with_underscores_action: REJECT_REQUEST`
    // (`filtergen/http_connection_manager.go`; `http1_integration_test.go` expects 400 Bad
    // Request). Whether hosted API Gateway keeps that default, and the body, are [not confirmed].
    if req.headers().keys().any(|n| n.as_str().contains('_')) {
        return Err(Refusal::new(
            "http1.unexpected_underscore",
            400,
            "Bad Request",
        ));
    }
    let declared = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Refusal::new(
            "request_payload_too_large",
            413,
            "Payload Too Large",
        ));
    }
    Ok(())
}

/// The whole body, within API Gateway's 32 MB.
pub(super) async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, Refusal> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Err(Refusal::new(
                "downstream_remote_disconnect",
                400,
                "Bad Request",
            ));
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Refusal::new(
                "request_payload_too_large",
                413,
                "Payload Too Large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
