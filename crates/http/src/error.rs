use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use items_domain::{DomainError, StoreError};

use crate::problem::{InvalidParam, PROBLEM_JSON, Problem};

/// Every way a request can fail. [`ApiError::problem`] is the one place that maps them to a
/// status and a problem body.
#[derive(Debug)]
pub enum ApiError {
    /// Input that parses but breaks a rule (422), or a malformed parameter (400).
    Invalid {
        status: StatusCode,
        params: Vec<InvalidParam>,
    },
    /// The body is not JSON at all (400).
    MalformedBody(String),
    UnsupportedMediaType(String),
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed(String),
    PreconditionFailed,
    IdempotencyConflict,
    /// A retry with an `Idempotency-Key` whose item has since been deleted (409): the create was
    /// carried out, and what it created is gone.
    IdempotentItemGone,
    /// The store cannot answer now: 503 with `Retry-After`.
    Unavailable(StoreError),
    /// A bug or an unexpected failure: a generic 500; the cause chain goes to the log.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem().detail)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Unavailable(e) => Some(e),
            ApiError::Internal(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl ApiError {
    /// A 422 for a value that breaks a domain rule.
    pub fn invalid(e: DomainError) -> Self {
        Self::invalid_param(StatusCode::UNPROCESSABLE_ENTITY, e.field, e.reason)
    }

    /// A 400 for a malformed path, query or header parameter.
    pub fn bad_param(e: DomainError) -> Self {
        Self::invalid_param(StatusCode::BAD_REQUEST, e.field, e.reason)
    }

    pub fn invalid_param(
        status: StatusCode,
        name: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ApiError::Invalid {
            status,
            params: vec![InvalidParam {
                name: name.into(),
                reason: reason.into(),
            }],
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { status, .. } => *status,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotentItemGone => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem body. 5xx bodies are generic: their detail belongs in the log.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (slug, title, detail, invalid_params) = match self {
            ApiError::Invalid { params, .. } => (
                "validation-error",
                "Invalid request",
                params
                    .iter()
                    .map(|p| format!("{}: {}", p.name, p.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
                params.clone(),
            ),
            ApiError::MalformedBody(d) => (
                "malformed-body",
                "Malformed request body",
                d.clone(),
                vec![],
            ),
            ApiError::UnsupportedMediaType(d) => (
                "unsupported-media-type",
                "Unsupported media type",
                d.clone(),
                vec![],
            ),
            ApiError::PayloadTooLarge => (
                "payload-too-large",
                "Request body too large",
                format!(
                    "the request body must not exceed {} bytes",
                    crate::MAX_BODY_BYTES
                ),
                vec![],
            ),
            ApiError::NotFound => (
                "not-found",
                "Not found",
                "no resource at this URL".to_owned(),
                vec![],
            ),
            ApiError::MethodNotAllowed(m) => (
                "method-not-allowed",
                "Method not allowed",
                format!("method {m} is not allowed on this resource"),
                vec![],
            ),
            ApiError::PreconditionFailed => (
                "precondition-failed",
                "Precondition failed",
                "the item has changed since the given ETag; fetch it again".to_owned(),
                vec![InvalidParam {
                    name: "If-Match".to_owned(),
                    reason: "does not match the current ETag".to_owned(),
                }],
            ),
            ApiError::IdempotencyConflict => (
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request body".to_owned(),
                vec![InvalidParam {
                    name: "Idempotency-Key".to_owned(),
                    reason: "already used with a different request".to_owned(),
                }],
            ),
            ApiError::IdempotentItemGone => (
                "idempotent-item-gone",
                "Created item deleted",
                "a create with this Idempotency-Key was carried out, but its item has since been \
                 deleted; use a new key to create another"
                    .to_owned(),
                vec![InvalidParam {
                    name: "Idempotency-Key".to_owned(),
                    reason: "its item has been deleted".to_owned(),
                }],
            ),
            ApiError::Unavailable(_) => (
                "service-unavailable",
                "Service unavailable",
                "the service cannot reach its database right now; retry later".to_owned(),
                vec![],
            ),
            ApiError::Internal(_) => (
                "internal-error",
                "Internal server error",
                "an unexpected error occurred".to_owned(),
                vec![],
            ),
        };
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            invalid_params,
            trace_id: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::PreconditionFailed => ApiError::PreconditionFailed,
            StoreError::IdempotencyConflict => ApiError::IdempotencyConflict,
            e @ StoreError::Unavailable(_) => ApiError::Unavailable(e),
            e @ StoreError::Other(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// The problem+json response. 5xx are logged (with the cause chain, as Error Reporting
    /// events) by the telemetry middleware, which finds the error on the response.
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let ApiError::Unavailable(_) = self {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        response.body(problem_body(self.problem()))
    }
}

/// The problem+json body, with the request's `trace_id` so that consumers can quote it.
fn problem_body(problem: Problem) -> Vec<u8> {
    let problem = Problem {
        trace_id: items_telemetry::current_trace_id(),
        ..problem
    };
    serde_json::to_vec(&problem).unwrap_or_default()
}

/// The generic 500 for a handler that panicked (the middleware reports the panic).
pub(crate) fn panic_response() -> HttpResponse {
    ApiError::Internal("the handler panicked".into()).error_response()
}

/// What the log gets for a failed request: the cause chain of an [`ApiError`], else the error's
/// own text.
pub(crate) fn log_detail(error: &actix_web::Error) -> String {
    match error.as_error::<ApiError>() {
        Some(e) => items_telemetry::logging::error_chain(e),
        None => format!("{error}"),
    }
}

/// Fallback for paths that match no route.
pub(crate) async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

/// Fallback for a known path with a method it does not support; `allow` lists the methods it has.
pub(crate) fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    actix_web::web::to(move |req: HttpRequest| async move {
        let mut response = ApiError::MethodNotAllowed(req.method().to_string()).error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    })
}
