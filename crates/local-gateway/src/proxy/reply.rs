//! Local replies: what the gateway answers itself, in ESPv2's shape, and why.

use std::borrow::Cow;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use serde_json::json;

use crate::log::Entry;

/// An ESPv2/Envoy local reply: `{"code":<status>,"message":"..."}` as application/json.
fn local_reply(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(json!({"code": status, "message": message}).to_string())
}

/// Why a filter refused a request: the local reply and what ESPv2 logs for it.
pub(super) struct Refusal {
    status: u16,
    message: Cow<'static, str>,
    /// ESPv2's `response_code_detail`.
    detail: Cow<'static, str>,
    /// ESPv2's `error_cause`: Service Control's status message, where it refused.
    cause: Option<String>,
    /// `WWW-Authenticate`, for JWT refusals.
    challenge: Option<String>,
}

impl Refusal {
    pub(super) fn new(
        detail: impl Into<Cow<'static, str>>,
        status: u16,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            detail: detail.into(),
            cause: None,
            challenge: None,
        }
    }

    pub(super) fn cause(self, cause: String) -> Self {
        Self {
            cause: Some(cause),
            ..self
        }
    }

    pub(super) fn challenge(self, challenge: String) -> Self {
        Self {
            challenge: Some(challenge),
            ..self
        }
    }

    /// The local reply, with the refusal recorded in the log entry.
    pub(super) fn into_response(self, entry: &mut Entry) -> HttpResponse {
        entry.response_code_detail = self.detail;
        entry.error_cause = self.cause;
        let mut response = local_reply(self.status, &self.message);
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}
