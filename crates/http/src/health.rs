//! The health probes. Behind API Gateway (`x-gateway-probe`) they need only the API key (the
//! uptime check sends nothing else, no JWT) and cost no quota (probes must not eat the
//! consumers' requests per minute). One extension for both: utoipa keeps an operation's
//! extensions in a `HashMap`, so two would come out in either order.

use actix_web::{HttpResponse, web};
use items_domain::ItemStore;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::responses::Unavailable;
use crate::state::ApiState;

/// The liveness probe's path: the one definition in code (the middleware's access-log sampling and
/// xtask's readiness waits use it; deploy/facts.toml states it for Terraform and the sidecar, and
/// `cargo xtask tidy` holds the two together).
pub const HEALTH_LIVE: &str = "/health/live";
/// The readiness probe's path (as [`HEALTH_LIVE`]).
pub const HEALTH_READY: &str = "/health/ready";

/// Body of the health probes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    pub(crate) status: &'static str,
}

/// Liveness
///
/// The process answers; never touches the database.
#[utoipa::path(
    get,
    path = HEALTH_LIVE,
    tag = "health",
    extensions(("x-gateway-probe" = json!(true))),
    responses((status = 200, description = "The process is alive.", body = Status))
)]
pub(crate) async fn health_live() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness
///
/// A pooled database connection answers a query.
#[utoipa::path(
    get,
    path = HEALTH_READY,
    tag = "health",
    extensions(("x-gateway-probe" = json!(true))),
    responses(
        (status = 200, description = "Ready to serve.", body = Status),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn health_ready<S: ItemStore>(
    state: web::Data<ApiState<S>>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ready()
        .await
        .map_err(|e| match ApiError::from(e) {
            // Whatever the cause, "not ready" is a 503 that the platform retries.
            ApiError::Internal(e) => ApiError::Unavailable(items_domain::StoreError::Other(e)),
            other => other,
        })?;
    Ok(HttpResponse::Ok().json(Status { status: "ready" }))
}
