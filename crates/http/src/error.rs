use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use items_domain::{DomainError, StoreError};

use crate::problem::{InvalidParam, PROBLEM_JSON, Problem};

/// Every way a request can fail. [`ApiError::status`] and [`ApiError::problem`] are the one place
/// that maps them to a status and a problem body: extractors and handlers say what went wrong,
/// never which status that is.
#[derive(Debug)]
pub enum ApiError {
    /// A malformed path, query or header parameter (400).
    BadParam(InvalidParam),
    /// Input that parses but breaks a rule (422).
    Invalid(InvalidParam),
    /// The body is not JSON at all (400).
    MalformedBody(String),
    UnsupportedMediaType(String),
    /// The body is longer than `limit` bytes.
    PayloadTooLarge {
        limit: usize,
    },
    NotFound,
    MethodNotAllowed(String),
    /// A CORS preflight from an origin, or for a method or header, the `cors` settings do not
    /// allow (400; actix-cors's reason as detail).
    CorsRefused(String),
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
        f.write_str(&self.detail())
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
        Self::invalid_field(e.field, e.reason)
    }

    /// A 422 for a body field (`name`, `items[0].name`, or `body` for the whole body).
    pub fn invalid_field(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid(InvalidParam {
            name: name.into(),
            reason: reason.into(),
        })
    }

    /// A 400 for a malformed path, query or header parameter.
    pub fn bad_param(e: DomainError) -> Self {
        Self::BadParam(InvalidParam {
            name: e.field.to_owned(),
            reason: e.reason,
        })
    }

    /// Status, problem type (`/problems/<slug>`) and title of each error: the table of statuses.
    #[rustfmt::skip]
    fn class(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadParam(_) => (S::BAD_REQUEST, "validation-error", "Invalid request"),
            Self::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "validation-error", "Invalid request"),
            Self::MalformedBody(_) => (S::BAD_REQUEST, "malformed-body", "Malformed request body"),
            Self::UnsupportedMediaType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type"),
            Self::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large"),
            Self::NotFound => (S::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            Self::CorsRefused(_) => (S::BAD_REQUEST, "cors-refused", "Cross-origin request refused"),
            Self::PreconditionFailed => (S::PRECONDITION_FAILED, "precondition-failed", "Precondition failed"),
            Self::IdempotencyConflict => (S::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused"),
            Self::IdempotentItemGone => (S::CONFLICT, "idempotent-item-gone", "Created item deleted"),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "service-unavailable", "Service unavailable"),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal-error", "Internal server error"),
        }
    }

    /// The problem's `detail`. 5xx details are generic: their cause belongs in the log.
    fn detail(&self) -> String {
        let fixed = match self {
            Self::BadParam(p) | Self::Invalid(p) => return format!("{}: {}", p.name, p.reason),
            Self::MalformedBody(d) | Self::UnsupportedMediaType(d) | Self::CorsRefused(d) => {
                return d.clone();
            }
            Self::PayloadTooLarge { limit } => {
                return format!("the request body must not exceed {limit} bytes");
            }
            Self::MethodNotAllowed(m) => {
                return format!("method {m} is not allowed on this resource");
            }
            Self::NotFound => "no resource at this URL",
            Self::PreconditionFailed => "the item has changed since the given ETag; fetch it again",
            Self::IdempotencyConflict => {
                "this Idempotency-Key was used with a different request body"
            }
            Self::IdempotentItemGone => {
                "a create with this Idempotency-Key was carried out, but its item has since been \
                 deleted; use a new key to create another"
            }
            Self::Unavailable(_) => "the service cannot reach its database right now; retry later",
            Self::Internal(_) => "an unexpected error occurred",
        };
        fixed.to_owned()
    }

    /// The input to fix, when the problem is about one.
    fn invalid_param(&self) -> Option<InvalidParam> {
        let (name, reason) = match self {
            Self::BadParam(p) | Self::Invalid(p) => return Some(p.clone()),
            Self::PreconditionFailed => ("If-Match", "does not match the current ETag"),
            Self::IdempotencyConflict => {
                ("Idempotency-Key", "already used with a different request")
            }
            Self::IdempotentItemGone => ("Idempotency-Key", "its item has been deleted"),
            _ => return None,
        };
        Some(InvalidParam {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    }

    pub fn status(&self) -> StatusCode {
        self.class().0
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.class();
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            invalid_params: self.invalid_param().into_iter().collect(),
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
pub(crate) fn method_not_allowed(allow: HeaderValue) -> actix_web::Route {
    actix_web::web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move {
            let mut response =
                ApiError::MethodNotAllowed(req.method().to_string()).error_response();
            response.headers_mut().insert(header::ALLOW, allow);
            response
        }
    })
}
