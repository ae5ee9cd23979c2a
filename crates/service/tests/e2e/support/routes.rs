//! Handlers that fail on purpose, for the telemetry tests; never registered by the service.

use actix_web::{HttpResponse, web};
use items_http::ApiError;

/// Registers `/test/fail` (a 5xx with a cause) and `/test/panic`.
pub fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/test/fail", web::get().to(fail))
        .route("/test/panic", web::get().to(boom));
}

async fn fail() -> Result<HttpResponse, ApiError> {
    let cause = std::io::Error::other("disk on fire");
    Err(ApiError::Internal(Box::new(std::io::Error::other(
        format!("loading the widget: {cause}"),
    ))))
}

pub const PANIC_LINE: u32 = line!() + 3;
#[allow(clippy::unused_async)]
async fn boom() -> HttpResponse {
    panic!("boom: the handler gave up")
}
